"""The plan of a stage (``training.dry_run=true``): mix, samples, steps, time and disk estimates."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow.parquet as pq
from torch.utils.data import Subset

from kuavo_train.config.schema import Config
from kuavo_train.curriculum.features import cache_key, disk_problem, frames_read, free_bytes
from kuavo_train.data.feature_cache import cached_frames_like, feature_cache_root
from kuavo_train.data.prepare import fixed_epoch_samples
from kuavo_train.data.replay import samples_per_epoch, task_counts
from kuavo_train.data.transfer import shared_memory_free, shared_memory_need, shared_memory_problem
from kuavo_train.device import choose_device
from kuavo_train.errors import KuavoError
from kuavo_train.evaluation.validate import limit_samples
from kuavo_train.policy.vision_features import embedding_flops, expected_embedding

# Rough figures to size a run before it starts; `benchmarks/` measures real ones.
_SECONDS_PER_SAMPLE = {"cuda": 0.02, "cpu": 0.05}
_BYTES_PER_PARAMETER = 4
# Rough embedding rates (FLOP/s) for the cache's build-time estimate. CPU: the 2-core machine embedded full-size
# SigLIP images (1.7e11 FLOPs each) at 1.1 s per image (docs/performance.md, "Speed levers"); CUDA: assumed, a
# fraction of a GPU's bf16 peak (not measured).
_EMBEDDING_FLOPS_PER_SECOND = {"cpu": 1.5e11, "cuda": 2e14}


@dataclass
class StagePlan:
    stage: int
    task: str
    mix: dict[int, float]
    train_frames: dict[int, int]
    samples_per_epoch: int
    per_task_samples: dict[int, int]
    steps_per_epoch: int
    epochs: int
    lr: float
    validation_frames: dict[int, int]
    estimated_hours: float
    estimated_checkpoint_gb: float
    shared_memory_need: int  # bytes of /dev/shm the loader workers use at most
    shared_memory_free: int | None
    cameras_missing: dict[str, list[str]]  # task name -> cameras of the model its data lacks (masked)
    feature_cache: str  # one line: the image-embedding cache this stage would use, its size and build time
    parameters: str = ""  # one line: what trains (full weights or a LoRA adapter), counts and static memory


def plan_stage(cfg: Config, data) -> StagePlan:
    stage = cfg.stage
    mix = cfg.replay_mix(stage)
    frames = {t: episode_frames(data, t, data.splits[t].train) for t in mix}
    total = fixed_epoch_samples(cfg) or samples_per_epoch(frames[cfg.task.id], mix[cfg.task.id])
    accumulation = cfg.training.gradient_accumulation_steps
    batches = -(-total // cfg.training.batch_size)
    steps = -(-batches // accumulation)  # optimizer steps; the last one may take fewer micro-batches
    if cfg.training.max_steps_per_epoch is not None:
        steps = min(steps, cfg.training.max_steps_per_epoch)
    device = choose_device(cfg.training.device).device.type
    samples = steps * cfg.training.batch_size * accumulation * cfg.task.training.max_epoch
    params = 450_000_000 if cfg.policy.pretrained_path else 1_000_000
    kept_dirs = 3 + cfg.training.keep_last_epochs  # best, best_running, last + epochs
    cache = plan_feature_cache(cfg, data, device)
    return StagePlan(
        stage=stage,
        task=cfg.task.dirname,
        mix=mix,
        train_frames=frames,
        samples_per_epoch=total,
        per_task_samples=task_counts(total, mix),
        steps_per_epoch=steps,
        epochs=cfg.task.training.max_epoch,
        lr=cfg.task.training.lr,
        validation_frames={t.id: episode_frames(data, t.id, data.splits[t.id].val) for t in cfg.seen_tasks},
        estimated_hours=samples * _SECONDS_PER_SAMPLE[device] / 3600,
        estimated_checkpoint_gb=(params * _BYTES_PER_PARAMETER * (kept_dirs + 2)) / 1e9,
        shared_memory_need=shared_memory_need(
            data.schema, cfg.training.batch_size, cfg.policy.chunk_size, cfg.training.num_workers, cache.sample_bytes
        ),
        shared_memory_free=shared_memory_free(),
        cameras_missing={t.name: list(t.missing_cameras) for t in data.schema.tasks if t.missing_cameras},
        feature_cache=cache.line,
        parameters=plan_parameters(cfg, data.schema),
    )


def plan_parameters(cfg: Config, schema) -> str:
    """What the stage trains, counted on a fresh build of its architecture (no weights read), and the static
    training state that needs: fp32 weights + gradients and AdamW's two moments of what trains."""
    import torch

    from kuavo_train.policy.adapters import attach_adapters
    from kuavo_train.policy.factory import count_parameters, load_policy

    try:
        policy = load_policy(replace(cfg.policy, load_vlm_weights=False), schema, None, torch.device("cpu"))
    except KuavoError as exc:
        return f"not counted ({exc})"
    peft = cfg.policy.peft
    what = f"LoRA adapter ({peft.mode}, rank {peft.rank})" if peft.mode != "off" else "full weights (as frozen)"
    if peft.mode != "off":
        attach_adapters(policy, peft, cfg.task.id, cfg.task.dirname, None, cached_vision=False)
    counts = count_parameters(policy)
    static_gib = (4 * counts.total + (4 + 8) * counts.trainable) / 2**30
    return f"{what}: {counts}; {static_gib:.2f} GiB static training state (fp32 weights, grads, AdamW; + activations)"


@dataclass
class CachePlan:
    line: str  # what data.feature_cache will do, its size and build time
    sample_bytes: int | None  # one sample's embeddings (every camera) when the cache is on, else None


def plan_feature_cache(cfg: Config, data, device: str) -> CachePlan:
    """What ``data.feature_cache`` will do in this stage; with ``on`` and too little disk, a one-line error."""
    mode, level = cfg.data.feature_cache, cfg.policy.exact_feature_cache_level()
    if mode == "off":
        return CachePlan("off (data.feature_cache=off)", None)
    if level is None:
        return CachePlan("off (the vision encoder trains: its embeddings change every step)", None)
    shape = expected_embedding(cfg.policy, level)
    if shape is None:
        return CachePlan(
            f"{level} embeddings (size unknown: the VLM config {cfg.policy.vlm_model_name} is not readable here)", None
        )
    # bf16 autocast makes the connector's output bf16; SigLIP's last layer norm stays fp32.
    bf16 = device == "cuda" and cfg.training.mixed_precision == "bf16" and level == "connector"
    dtype, itemsize = ("bfloat16", 2) if bf16 else ("float32", 4)
    done = {t.id: _cached_like(cfg, data, t.id, level, (*shape, dtype)) for t in cfg.tasks}
    frames = images = new_images = 0
    for read in frames_read(cfg, data):
        indices = _frame_indices(data, read)
        real = len(data.schema.cameras) - len(data.schema.task(read.task_id).missing_cameras)
        frames += len(indices)
        images += len(indices) * real
        new_images += int((~done[read.task_id][indices]).sum()) * real
    size, new_size = images * shape[0] * shape[1] * itemsize, new_images * shape[0] * shape[1] * itemsize
    flops = embedding_flops(cfg.policy)
    seconds = None if flops is None else new_images * flops / _EMBEDDING_FLOPS_PER_SECOND.get(device, 1e11)
    build = "?" if seconds is None else (f"{seconds / 3600:.1f} h" if seconds > 360 else f"{seconds:.0f} s")
    problem = disk_problem(cfg.data.cache_dir, new_size)
    if problem is not None:
        if mode == "on":
            raise KuavoError(problem)
        return CachePlan(f"off ({problem})", None)
    where = feature_cache_root(cfg.data.cache_dir, "").parent
    line = (
        f"{level} embeddings of {frames} frames ({images} images, {shape[0]}x{shape[1]} each), {size / 1e9:.2f} GB "
        f"under {where}; {new_images} images not cached yet: {new_size / 1e9:.2f} GB more "
        f"({free_bytes(where) / 1e9:.0f} GB free), "
        f"built in ~{build} (rough)"
    )
    return CachePlan(line, len(data.schema.cameras) * shape[0] * shape[1] * itemsize)


def _frame_indices(data, read) -> np.ndarray:
    """Global frame indices a stage reads for ``read`` (validation's evenly spaced cap applied)."""
    files = sorted((data.v30_roots[read.task_id] / "data").glob("*/*.parquet"))
    tables = [pq.read_table(f, columns=["episode_index", "index"]) for f in files]
    episode = np.concatenate([t.column("episode_index").to_numpy() for t in tables])
    index = np.concatenate([t.column("index").to_numpy() for t in tables])
    chosen = index[np.isin(episode, read.episodes)]
    limited = limit_samples(range(len(chosen)), read.max_samples)
    return chosen[list(limited.indices)] if isinstance(limited, Subset) else chosen


def _cached_like(cfg, data, task_id: int, level: str, embedding: tuple[int, int, str]) -> np.ndarray:
    """Frames of the task's dataset already in a cache this stage would reuse (weights assumed frozen alike)."""
    key, frames = cache_key(
        data, task_id, embedding, level=level, resize=cfg.policy.resize_imgs_with_padding, weights=""
    )
    return cached_frames_like(feature_cache_root(cfg.data.cache_dir, key.dataset), key, frames)


def episode_frames(data, task_id: int, episodes: list[int]) -> int:
    files = sorted((data.v30_roots[task_id] / "data").glob("*/*.parquet"))
    return sum(
        int(np.isin(pq.read_table(f, columns=["episode_index"]).column("episode_index").to_numpy(), episodes).sum())
        for f in files
    )


def format_plan(plan: StagePlan) -> str:
    lines = [
        f"Plan of stage {plan.stage} ({plan.task}):",
        "  replay mix:        " + ", ".join(f"task{t} {s:.2f}" for t, s in plan.mix.items()),
        "  train frames:      " + ", ".join(f"task{t} {n}" for t, n in plan.train_frames.items()),
        f"  samples per epoch: {plan.samples_per_epoch} ("
        + ", ".join(f"task{t} {n}" for t, n in plan.per_task_samples.items())
        + ")",
        (
            f"  steps:             {plan.steps_per_epoch}/epoch x {plan.epochs} epochs = "
            f"{plan.steps_per_epoch * plan.epochs}"
        ),
        f"  learning rate:     {plan.lr:g}",
        "  validation frames: " + ", ".join(f"task{t} {n}" for t, n in plan.validation_frames.items()),
        f"  estimated time:    {plan.estimated_hours:.2f} h (rough, from a fixed per-sample cost)",
        f"  estimated disk:    {plan.estimated_checkpoint_gb:.1f} GB of checkpoints",
        f"  shared memory:     {_shm_line(plan)}",
        f"  feature cache:     {plan.feature_cache}",
        f"  trains:            {plan.parameters}",
    ]
    lines += [
        f"  camera masked:     task {task} has no {', '.join(c.removeprefix('observation.images.') for c in cams)} "
        "(trained with it masked, as SmolVLA masks an absent camera)"
        for task, cams in plan.cameras_missing.items()
    ]
    return "\n".join(lines)


def _shm_line(plan: StagePlan) -> str:
    if plan.shared_memory_need == 0:
        return "none (training.num_workers=0)"
    free = "unknown" if plan.shared_memory_free is None else f"{plan.shared_memory_free / 2**20:.0f} MiB free"
    problem = shared_memory_problem(plan.shared_memory_need, plan.shared_memory_free)
    return f"up to {plan.shared_memory_need / 2**20:.0f} MiB in /dev/shm by the loader workers ({free})" + (
        f" - TOO SMALL: {problem}" if problem else ""
    )
