"""Everything a stage needs from the data, done once per curriculum: ingest, schema, splits, stats.

Files written at the curriculum output root (shared by all stages):
``feature_schema.json``, ``splits.json`` (held-out episodes), ``normalization_stats.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import ConcatDataset

from kuavo_train.config.schema import Config, TaskConfig
from kuavo_train.data.constants import ACTION, STATE
from kuavo_train.data.feature_cache import FeatureCache
from kuavo_train.data.ingest import ingest_dataset
from kuavo_train.data.replay import ReplayMixSampler
from kuavo_train.data.schema import FeatureSchema, TaskFeatures, build_feature_schema
from kuavo_train.data.source import SourceInfo, read_source_info
from kuavo_train.data.splits import EpisodeSplit, load_or_create_splits
from kuavo_train.data.stats import dataset_moments, load_stats, merged_stats, save_stats
from kuavo_train.data.task_dataset import TaskDataset
from kuavo_train.data.video import resolve_video_backend
from kuavo_train.errors import KuavoError
from kuavo_train.layout import RunPaths

logger = logging.getLogger(__name__)


@dataclass
class CurriculumData:
    schema: FeatureSchema
    stats: dict  # lerobot-style {key: {mean, std, min, max, count}} as numpy arrays
    splits: dict[int, EpisodeSplit]
    v30_roots: dict[int, Path]
    video_backend: str  # resolved `data.video_backend`: torchcodec or pyav (see kuavo_train.data.video)
    # Task id -> its cached image embeddings, once a stage built them (curriculum/features.py); empty = images.
    feature_caches: dict[int, FeatureCache] = field(default_factory=dict)


def prepare_curriculum_data(cfg: Config, run_root: Path) -> CurriculumData:
    """Ingest every curriculum task, check it against its task file, and fix schema/splits/stats."""
    video_backend = resolve_video_backend(cfg.data.video_backend)
    infos = {task.id: read_source_info(task.data.root) for task in cfg.tasks}
    _check_cameras_exist_somewhere(cfg, infos)
    per_task = [_task_features(task, infos[task.id]) for task in cfg.tasks]
    schema = build_feature_schema(per_task)
    v30_roots = {
        task.id: ingest_dataset(task.data.root, cfg.data.cache_dir, keep_depth=cfg.data.keep_depth)
        for task in cfg.tasks
    }
    _check_same_data_as_before(run_root, v30_roots)
    wanted = {task.id: (_episodes_of(task, infos[task.id]), cfg.training.validation_episodes) for task in cfg.tasks}
    splits = load_or_create_splits(RunPaths(run_root).splits, wanted, cfg.training.seed)
    stats = _load_or_compute_stats(run_root, schema, v30_roots, splits)
    schema.save(RunPaths(run_root).feature_schema)
    return CurriculumData(schema=schema, stats=stats, splits=splits, v30_roots=v30_roots, video_backend=video_backend)


def _check_cameras_exist_somewhere(cfg: Config, infos: dict[int, SourceInfo]) -> None:
    """A camera a task file lists but its data lacks is masked for that task when another task's data has it;
    when no task's data has it, it is an error (the model would never see it)."""
    recorded = {c for task in cfg.tasks for c in task.data.cameras if c in infos[task.id].camera_keys}
    for task in cfg.tasks:
        info = infos[task.id]
        if not any(c in info.camera_keys for c in task.data.cameras):
            raise KuavoError(
                f"task {task.name} ({info.root}): none of its cameras {task.data.cameras} is in the dataset "
                f"(it has {info.camera_keys}); a task needs at least one real camera: fix task.data.cameras"
            )
        nowhere = [c for c in task.data.cameras if c not in info.camera_keys and c not in recorded]
        if nowhere:
            raise KuavoError(
                f"task {task.name} ({info.root}): camera(s) {nowhere} not in the dataset (it has "
                f"{info.camera_keys}) nor in any other task's; fix task.data.cameras or the export"
            )


def _check_same_data_as_before(run_root: Path, v30_roots: dict[int, Path]) -> None:
    """The stats and splits of a run belong to the data they were computed on."""
    path = RunPaths(run_root).data_fingerprint
    current = {str(task_id): root.name for task_id, root in v30_roots.items()}
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != current:
            changed = sorted(k for k in current if saved.get(k) != current[k])
            raise KuavoError(
                f"the data of task(s) {changed} changed since {run_root} was started (see {path}); its normalization "
                "and splits belong to the old data: use a new training.output_directory"
            )
        return
    run_root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2))


def _task_features(task: TaskConfig, info: SourceInfo) -> tuple[TaskFeatures, dict, float]:
    where = f"task {task.name} ({info.root})"
    dims = {}
    for key, expected in ((STATE, task.data.state_dim), (ACTION, task.data.action_dim)):
        found = info.vector_dim(key)
        if found is None:
            raise KuavoError(f"{where}: feature '{key}' is missing from meta/info.json")
        if expected is not None and found != expected:
            name = "state_dim" if key == STATE else "action_dim"
            raise KuavoError(
                f"{where}: '{key}' has {found} dims but the task file expects {expected}; "
                f"fix task.data.{name} or the data"
            )
        dims[key] = found
    cameras = {
        c: tuple(int(s) for s in _chw(info.features[c]["shape"], info.features[c].get("names")))
        for c in task.data.cameras
        if c in info.camera_keys
    }
    features = TaskFeatures(task.id, task.name, task.language_instruction, dims[STATE], dims[ACTION])
    return features, cameras, info.fps


def _chw(shape: list[int], names: list[str] | None) -> tuple[int, int, int]:
    """Camera shape as (C, H, W); LeRobot stores (H, W, C) with names [height, width, channel(s)]."""
    if names and list(names)[0] in ("height", "h"):
        return shape[2], shape[0], shape[1]
    return tuple(shape)  # type: ignore[return-value]


def _episodes_of(task: TaskConfig, info: SourceInfo) -> list[int]:
    available = list(range(info.total_episodes))
    if task.data.episodes_to_use is None:
        return available
    unknown = sorted(set(task.data.episodes_to_use) - set(available))
    if unknown:
        raise KuavoError(
            f"task {task.name}: data.episodes_to_use lists episodes {unknown[:10]} "
            f"that {info.root} does not have (0..{len(available) - 1})"
        )
    return sorted(set(task.data.episodes_to_use))


def _load_or_compute_stats(run_root: Path, schema: FeatureSchema, v30_roots: dict[int, Path], splits) -> dict:
    path = RunPaths(run_root).stats
    if path.is_file():
        stats = load_stats(path)
        if len(stats[STATE]["mean"]) != schema.state_dim or len(stats[ACTION]["mean"]) != schema.action_dim:
            raise KuavoError(
                f"{path} was computed for other state/action sizes than the curriculum's data; "
                "use a new training.output_directory"
            )
        return stats
    logger.info("computing normalization stats over all %d curriculum tasks", len(v30_roots))
    per_task = [dataset_moments(v30_roots[task.task_id], splits[task.task_id].train) for task in schema.tasks]
    stats = merged_stats(per_task, schema.state_dim, schema.action_dim)
    run_root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_stats(stats, tmp)
    tmp.replace(path)
    return stats


def task_dataset(
    data: CurriculumData, task_id: int, episodes: list[int], chunk_size: int, use_cache: bool = True
) -> TaskDataset:
    """A task's samples; with cached image embeddings (unless ``use_cache`` is False) instead of images."""
    return TaskDataset(
        data.v30_roots[task_id],
        data.schema.task(task_id),
        data.schema,
        episodes,
        chunk_size,
        video_backend=data.video_backend,
        features=data.feature_caches.get(task_id) if use_cache else None,
    )


def replay_episodes(split: EpisodeSplit, cap: int | None, seed: int, task_id: int) -> list[int]:
    """Training episodes an earlier task contributes to replay (a seeded subset when capped)."""
    if cap is None or cap >= len(split.train):
        return split.train
    import numpy as np

    rng = np.random.default_rng([seed, task_id, 7])
    return sorted(int(e) for e in rng.choice(split.train, size=cap, replace=False))


def fixed_epoch_samples(cfg: Config) -> int | None:
    """Samples per epoch when ``training.steps_per_epoch`` fixes the epoch (steps x effective batch:
    global batch x gradient accumulation), else None."""
    steps = cfg.training.steps_per_epoch
    return None if steps is None else steps * cfg.training.batch_size * cfg.training.gradient_accumulation_steps


def build_training_stream(
    cfg: Config, data: CurriculumData, stage: int, seed: int, num_replicas: int = 1, rank: int = 0
) -> tuple[ConcatDataset, ReplayMixSampler]:
    """The stage's mixed training dataset and its sampler (replay of earlier tasks at the configured shares)."""
    mix = cfg.replay_mix(stage)
    current = cfg.tasks[stage - 1].id
    datasets = []
    for task_id in mix:
        split = data.splits[task_id]
        episodes = (
            split.train
            if task_id == current
            else replay_episodes(split, cfg.sequential.replay_max_episodes_per_task, seed, task_id)
        )
        datasets.append(task_dataset(data, task_id, episodes, cfg.policy.chunk_size))
    sizes = {task_id: len(ds) for task_id, ds in zip(mix, datasets, strict=True)}
    sampler = ReplayMixSampler(
        sizes, mix, current, seed, num_replicas=num_replicas, rank=rank, total=fixed_epoch_samples(cfg)
    )
    return ConcatDataset(datasets), sampler
