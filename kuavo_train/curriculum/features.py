"""Build the image-embedding caches a stage reads (``data.feature_cache``; storage: data/feature_cache.py).

Before a stage trains, every frame it will read - the training episodes of the tasks in its replay
mix and the held-out episodes of every curriculum task (the final evaluation reads them all) - gets
its embeddings computed once with the stage's own (frozen) weights, on its device, under its
autocast. Frames cached by an earlier stage or an interrupted build are not computed again.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset
from tqdm import tqdm

from kuavo_train.config.schema import Config
from kuavo_train.data.feature_cache import FeatureCache, FeatureCacheKey, feature_cache_root
from kuavo_train.data.ingest import fingerprint_source
from kuavo_train.data.prepare import CurriculumData, replay_episodes, task_dataset
from kuavo_train.data.source import read_source_info
from kuavo_train.data.transfer import shared_memory_free, shared_memory_need, shared_memory_problem
from kuavo_train.errors import KuavoError
from kuavo_train.evaluation.validate import limit_samples, make_loader
from kuavo_train.policy.vision_features import embed_images, embedding_weights_digest

logger = logging.getLogger(__name__)

_COMMIT_SECONDS = 30.0  # how often a build marks its written rows done (what a crash can lose)
_DISK_MARGIN = 1.1  # room asked for beyond the cache's own size


@dataclass
class FeatureCaches:
    caches: dict[int, FeatureCache]  # task id -> its dataset's cache
    level: str
    built_frames: int
    seconds: float  # spent building (and checking) the caches

    def describe(self) -> str:
        done = {task_id: int(c.done().sum()) for task_id, c in self.caches.items()}
        cached = sum(done.values())
        size = sum(done[task_id] * c.key.bytes_per_frame() for task_id, c in self.caches.items())
        return (
            f"image feature cache: {self.level} embeddings of {cached} frames, {size / 1e9:.2f} GB "
            f"({self.built_frames} computed now, {self.seconds:.1f} s); the loader decodes no video"
        )


@dataclass(frozen=True)
class FramesRead:
    """Frames a stage reads from one task: some of its episodes, all frames or validation's evenly spaced cap."""

    task_id: int
    episodes: list[int]
    max_samples: int | None  # ``training.max_validation_samples`` for held-out episodes, None: every frame


def frames_read(cfg: Config, data: CurriculumData) -> list[FramesRead]:
    """The training episodes of the replay mix, and the held-out ones of every task as validation reads them."""
    current = cfg.task.id
    reads = [FramesRead(t.id, data.splits[t.id].val, cfg.training.max_validation_samples) for t in cfg.tasks]
    for task_id in cfg.replay_mix():
        split = data.splits[task_id]
        train = (
            split.train
            if task_id == current
            else replay_episodes(split, cfg.sequential.replay_max_episodes_per_task, cfg.training.seed, task_id)
        )
        reads.append(FramesRead(task_id, train, None))
    return reads


def prepare_feature_caches(
    cfg: Config, data: CurriculumData, policy, device: torch.device, autocast, echo=print, build: bool = True
) -> FeatureCaches | None:
    """The stage's caches, built where frames are missing; None when ``data.feature_cache`` is off, or auto and
    not exact or without room on disk or in /dev/shm (said in one line). ``build=False`` only opens them (the
    other processes of a multi-process run, after rank 0 built them)."""
    mode, level = cfg.data.feature_cache, cfg.policy.exact_feature_cache_level()
    if mode == "off":
        return None
    if level is None:  # validated: "on" needs a frozen encoder
        echo("image feature cache: off (the vision encoder trains, so its embeddings change every step)")
        return None
    started = time.perf_counter()
    was_training = policy.training
    policy.eval()
    try:
        with autocast():
            shapes = _probe(policy, data, level)
        weights = embedding_weights_digest(policy, level)
        resize = policy.config.resize_imgs_with_padding
        compute = compute_fingerprint(device, autocast, data.video_backend)
        caches = {t.id: _open(cfg, data, t.id, level, weights, shapes, resize, compute) for t in cfg.tasks}
        work = [(read, *_missing(cfg, data, read, caches[read.task_id])) for read in frames_read(cfg, data)]
        todo = sum(len(positions) for _, _, positions in work)
        if todo and not build:
            raise KuavoError(f"the image feature caches lack {todo} frames after rank 0 built them; rerun the stage")
        if not _room_for(cfg, caches, todo, mode, echo) or not _shared_memory_for(cfg, data, shapes, mode, echo):
            return None
        if todo:
            echo(f"image feature cache: embedding {todo} frames once ({level} level) ...")
        with tqdm(total=todo, desc="caching image embeddings", unit="frame", disable=not sys.stderr.isatty()) as bar:
            for cache in caches.values():
                _cache_blank_cameras(data, policy, device, autocast, cache)
            for read, dataset, positions in work:
                _build(cfg, data, policy, device, autocast, caches[read.task_id], dataset, positions, bar)
    finally:
        policy.train(was_training)
    result = FeatureCaches(caches, level, todo, time.perf_counter() - started)
    echo(result.describe())
    return result


def _probe(policy, data: CurriculumData, level: str) -> dict[str, tuple[int, int, str]]:
    """camera -> (tokens, dim, dtype) of its embedding, from one blank image."""
    device = next(policy.parameters()).device
    shapes = {}
    for camera, chw in data.schema.cameras.items():
        out = embed_images(policy, {camera: torch.zeros(1, *chw, device=device)}, level)[camera]
        shapes[camera] = (out.shape[1], out.shape[2], str(out.dtype).removeprefix("torch."))
    return shapes


def compute_fingerprint(device: torch.device, autocast, video_backend: str) -> str:
    """What else decides an embedding's values: device type, autocast dtype, TF32, decoder, library versions."""
    import lerobot
    import transformers

    with autocast():
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    tf32 = device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return (
        f"{device.type}|autocast={dtype}|tf32={tf32}|video={video_backend}|torch={torch.__version__}|"
        f"lerobot={getattr(lerobot, '__version__', '?')}|transformers={transformers.__version__}"
    )


def cache_key(
    data: CurriculumData, task_id: int, embedding: tuple[int, int, str], **fields
) -> tuple[FeatureCacheKey, int]:
    """(the key of task ``task_id``'s cache, its dataset's frame count); ``embedding`` is (tokens, dim, dtype),
    ``fields`` the rest of FeatureCacheKey (level, resize, weights, compute)."""
    info = read_source_info(data.v30_roots[task_id])
    tokens, dim, dtype = embedding
    key = FeatureCacheKey(
        dataset=fingerprint_source(info, keep_depth=True),
        cameras={c: tuple(s) for c, s in data.schema.cameras.items()},
        blank_cameras=tuple(data.schema.task(task_id).missing_cameras),
        dtype=dtype,
        tokens=tokens,
        dim=dim,
        **{"resize": tuple(fields.pop("resize")), **fields},
    )
    return key, info.total_frames


def _open(cfg, data, task_id, level, weights, shapes, resize, compute) -> FeatureCache:
    embedding, *others = {shapes[c] for c in data.schema.cameras}
    if others:
        raise KuavoError(f"cameras give embeddings of different shapes {shapes}; set data.feature_cache=off")
    key, frames = cache_key(data, task_id, embedding, level=level, resize=resize, weights=weights, compute=compute)
    return FeatureCache.open_or_create(feature_cache_root(cfg.data.cache_dir, key.dataset), key, frames)


def _missing(cfg, data, read: FramesRead, cache: FeatureCache):
    """(the read's dataset with images, positions in it whose frames are not cached yet)."""
    dataset = task_dataset(data, read.task_id, read.episodes, cfg.policy.chunk_size, use_cache=False)
    if len(dataset.frame_indices) and int(dataset.frame_indices.max()) >= cache.frames:
        raise KuavoError(
            f"{data.v30_roots[read.task_id]}: frame index {int(dataset.frame_indices.max())} >= meta/info.json "
            f"total_frames {cache.frames}; the dataset's metadata is inconsistent: re-export it"
        )
    limited = limit_samples(dataset, read.max_samples)
    positions = np.asarray(limited.indices if isinstance(limited, Subset) else range(len(dataset)), dtype=np.int64)
    return dataset, positions[~cache.done()[dataset.frame_indices[positions]]]


def disk_problem(cache_dir: str, need: int) -> str | None:
    """Why ``need`` more bytes of embeddings do not fit under ``<cache_dir>/features`` (with a margin), or None."""
    where = feature_cache_root(cache_dir, "").parent
    free = free_bytes(where)
    if free >= need * _DISK_MARGIN:
        return None
    return (
        f"the image feature cache needs up to {need / 1e9:.1f} GB more under {where} but {free / 1e9:.1f} GB are "
        "free; free space, point data.cache_dir at a larger disk, set policy.freeze_connector=true (~13x smaller) "
        "or data.feature_cache=off"
    )


def _room_for(cfg: Config, caches: dict[int, FeatureCache], todo: int, mode: str, echo) -> bool:
    message = disk_problem(cfg.data.cache_dir, todo * max(cache.key.bytes_per_frame() for cache in caches.values()))
    if message is None:
        return True
    if mode == "on":
        raise KuavoError(message)
    echo(f"image feature cache: off ({message})")
    return False


def _shared_memory_for(cfg: Config, data: CurriculumData, shapes: dict, mode: str, echo) -> bool:
    """Whether the loader workers' /dev/shm holds batches of embeddings (SigLIP's are 3.5x a 480x640 image)."""
    tokens, dim, dtype = next(iter(shapes.values()))
    sample = len(data.schema.cameras) * tokens * dim * torch.empty(0, dtype=getattr(torch, dtype)).element_size()
    need = shared_memory_need(
        data.schema, cfg.training.batch_size, cfg.policy.chunk_size, cfg.training.num_workers, sample
    )
    problem = shared_memory_problem(need, shared_memory_free())
    if problem is None:
        return True
    message = f"batches of image embeddings do not fit: {problem}"
    if mode == "on":
        raise KuavoError(message)
    echo(f"image feature cache: off ({message})")
    return False


def free_bytes(path: Path) -> int:
    """Free bytes on the disk ``path`` is (or would be created) on."""
    path = Path(path).expanduser()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def _cache_blank_cameras(data, policy, device, autocast, cache: FeatureCache) -> None:
    if cache.key.blank_cameras and not cache.blank_done():
        with autocast():
            blanks = {c: torch.zeros(1, *data.schema.cameras[c], device=device) for c in cache.key.blank_cameras}
            cache.write_blank(embed_images(policy, blanks, cache.key.level))


def _build(cfg, data, policy, device, autocast, cache: FeatureCache, dataset, positions, bar) -> None:
    if not len(positions):
        return
    real = [c for c in data.schema.cameras if c not in cache.key.blank_cameras]
    loader = make_loader(Subset(dataset, positions.tolist()), cfg.training.batch_size, cfg.training.num_workers)
    done, last_commit = 0, time.perf_counter()
    try:
        for batch in loader:
            images = {c: batch[c].to(device, non_blocking=True).float().div_(255.0) for c in real}
            with autocast():
                embeddings = embed_images(policy, images, cache.key.level)
            frames = dataset.frame_indices[positions[done : done + len(batch["task"])]]
            cache.write(frames, embeddings)
            done += len(frames)
            bar.update(len(frames))
            if time.perf_counter() - last_commit > _COMMIT_SECONDS:
                cache.commit()
                last_commit = time.perf_counter()
    finally:
        cache.commit()  # what was written is kept, also when interrupted
