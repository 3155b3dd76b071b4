"""The plan of a stage (``training.dry_run=true``): mix, samples, steps, time and disk estimates."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from kuavo_train.config.schema import Config
from kuavo_train.curriculum.features import frames_read
from kuavo_train.data.prepare import fixed_epoch_samples
from kuavo_train.data.replay import samples_per_epoch, task_counts
from kuavo_train.data.transfer import shared_memory_free, shared_memory_need, shared_memory_problem
from kuavo_train.device import choose_device
from kuavo_train.errors import KuavoError
from kuavo_train.policy.vision_features import embedding_flops, expected_embedding

# Rough figures to size a run before it starts; `benchmarks/` measures real ones.
_SECONDS_PER_SAMPLE = {"cuda": 0.02, "cpu": 0.05}
_BYTES_PER_PARAMETER = 4
# Rough embedding rates (FLOP/s) for the cache's build-time estimate: the 2-core CPU measured ~1.7 s per
# full-size SigLIP image (1.7e11 FLOPs); a GPU in bf16 at a fraction of its peak.
_EMBEDDING_FLOPS_PER_SECOND = {"cpu": 1e11, "cuda": 2e14}


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
            data.schema, cfg.training.batch_size, cfg.policy.chunk_size, cfg.training.num_workers
        ),
        shared_memory_free=shared_memory_free(),
        cameras_missing={t.name: list(t.missing_cameras) for t in data.schema.tasks if t.missing_cameras},
        feature_cache=feature_cache_line(cfg, data, device),
    )


def feature_cache_line(cfg: Config, data, device: str) -> str:
    """What ``data.feature_cache`` will do in this stage; with ``on`` and too little disk, a one-line error."""
    mode, level = cfg.data.feature_cache, cfg.policy.exact_feature_cache_level()
    if mode == "off":
        return "off (data.feature_cache=off)"
    if level is None:
        return "off (the vision encoder trains: its embeddings change every step)"
    shape = expected_embedding(cfg.policy, level)
    if shape is None:
        return f"{level} embeddings (size unknown: the VLM config {cfg.policy.vlm_model_name} is not readable here)"
    frames = images = 0
    for read in frames_read(cfg, data):
        count = min(episode_frames(data, read.task_id, read.episodes), read.max_samples or math.inf)
        frames += count
        images += count * (len(data.schema.cameras) - len(data.schema.task(read.task_id).missing_cameras))
    bf16 = device == "cuda" and cfg.training.mixed_precision == "bf16" and level == "connector"
    size = images * shape[0] * shape[1] * (2 if bf16 else 4)
    flops = embedding_flops(cfg.policy)
    seconds = None if flops is None else images * flops / _EMBEDDING_FLOPS_PER_SECOND[device]
    build = "?" if seconds is None else (f"{seconds / 3600:.1f} h" if seconds > 360 else f"{seconds:.0f} s")
    where = Path(cfg.data.cache_dir).expanduser()
    free = _disk_free(where)
    if size * 1.1 > free:
        problem = (
            f"the image feature cache needs up to {size / 1e9:.1f} GB under {where} but {free / 1e9:.1f} GB are free; "
            "free space, point data.cache_dir at a larger disk, set policy.freeze_connector=true or "
            "data.feature_cache=off"
        )
        if mode == "on":
            raise KuavoError(problem)
        return f"off ({problem})"
    return (
        f"{level} embeddings of {int(frames)} frames ({int(images)} images, {shape[0]}x{shape[1]} each): "
        f"up to {size / 1e9:.2f} GB under {where} ({free / 1e9:.0f} GB free), built once in ~{build} "
        "(rough; frames cached by earlier stages are not built again)"
    )


def _disk_free(path: Path) -> int:
    """Free bytes on the disk ``path`` is (or would be) on."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def episode_frames(data, task_id: int, episodes: list[int]) -> int:
    import numpy as np
    import pyarrow.parquet as pq

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
