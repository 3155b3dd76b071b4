"""What a stage trains with, built in one place for the trainer (`StageRunner`) and benchmarks/throughput.py:
policy (loaded, frozen), processors (merged stats), replay-mixed stream and loader, optimizer, schedule, step context.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader

from kuavo_train.config.schema import Config
from kuavo_train.curriculum.features import FeatureCaches, prepare_feature_caches
from kuavo_train.data.prepare import CurriculumData, build_training_stream
from kuavo_train.data.replay import ReplayMixSampler
from kuavo_train.errors import KuavoError
from kuavo_train.evaluation.validate import make_loader
from kuavo_train.policy.adapters import Adapters, attach_adapters, check_start_fits_mode
from kuavo_train.policy.factory import load_policy, make_processors
from kuavo_train.training.distributed import DistContext
from kuavo_train.training.loop import StepContext, make_autocast
from kuavo_train.training.optim import make_optimizer, make_scheduler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stage_seed(cfg: Config) -> int:
    """The seed a stage starts from (before its policy is built): ``training.seed`` + the stage number."""
    return cfg.training.seed + cfg.stage


def compile_model_forward(policy, backend: str) -> None:
    """``torch.compile`` the flow-matching model's forward (what the training loss and validation call) on this
    policy instance: its weights, state dict and saved checkpoints are unchanged."""
    policy.model.forward = torch.compile(policy.model.forward, backend=backend)


def rank_batch_size(cfg: Config, world_size: int = 1) -> int:
    """Samples per process per loader batch; ``training.batch_size`` is the global batch."""
    if cfg.training.batch_size % world_size:
        raise KuavoError(
            f"training.batch_size={cfg.training.batch_size} must be divisible by the {world_size} processes"
        )
    return cfg.training.batch_size // world_size


def steps_per_epoch(cfg: Config, loader_batches: int) -> int:
    """Optimizer steps of an epoch of ``loader_batches`` loader batches (gradient accumulation, max_steps_per_epoch)."""
    steps = math.ceil(loader_batches / cfg.training.gradient_accumulation_steps)
    cap = cfg.training.max_steps_per_epoch
    return steps if cap is None else min(steps, cap)


@dataclass
class StageTraining:
    """What a stage trains with, built by `build_stage_training` (for StageRunner and benchmarks/throughput.py)."""

    policy: object  # SmolVLAPolicy, frozen as configured
    preprocessor: object
    postprocessor: object
    train_set: ConcatDataset
    sampler: ReplayMixSampler
    train_loader: DataLoader
    steps_per_epoch: int  # optimizer steps
    total_steps: int  # of the stage: the lr schedule's length
    optimizer: torch.optim.Optimizer
    scheduler: object
    ctx: StepContext  # what `train_step` / `train_epoch` take
    data: CurriculumData  # the curriculum's data, with the feature caches when they are on
    feature_caches: FeatureCaches | None
    adapters: Adapters | None = None  # policy.peft: this stage's LoRA adapter (and the per-task bank)


def build_stage_training(
    cfg: Config,
    data: CurriculumData,
    start_from: str | Path | None,
    device: torch.device,
    dist: DistContext | None = None,
    echo=print,
) -> StageTraining:
    """Stage ``cfg.stage``'s policy (``load_policy``: from ``start_from`` or fresh, fp32, frozen; with
    ``policy.peft`` this stage's LoRA adapter on it), processors (merged stats), replay-mixed stream, loader,
    AdamW + schedule and step context. Seed first (``seed_everything(stage_seed(cfg))``): a fresh policy's weights
    come from the global torch RNG."""
    dist = dist or DistContext()
    check_start_fits_mode(start_from, cfg.policy.peft.mode)
    policy = load_policy(cfg.policy, data.schema, str(start_from) if start_from else None, device)
    adapters = None
    if cfg.policy.peft.mode != "off":
        cached = cfg.data.feature_cache != "off" and cfg.policy.exact_feature_cache_level() is not None
        adapters = attach_adapters(policy, cfg.policy.peft, cfg.task.id, cfg.task.dirname, start_from, cached)
    preprocessor, postprocessor = make_processors(policy, data.stats)
    if cfg.training.compile:
        compile_model_forward(policy, cfg.training.compile_backend)
    autocast = make_autocast(device, cfg.training.mixed_precision)
    caches = _feature_caches(cfg, data, policy, device, autocast, dist, echo)
    if caches is not None:
        data = replace(data, feature_caches=caches.caches)
    train_set, sampler = build_training_stream(
        cfg, data, cfg.stage, cfg.training.seed, num_replicas=dist.world_size, rank=dist.rank
    )
    loader = make_loader(train_set, rank_batch_size(cfg, dist.world_size), cfg.training.num_workers, sampler)
    epoch_steps = steps_per_epoch(cfg, len(loader))
    total_steps = epoch_steps * cfg.task.training.max_epoch
    optimizer = make_optimizer(policy, cfg.task.training.lr, cfg.policy.optimizer, device)
    scheduler = make_scheduler(optimizer, cfg.task.training.lr, total_steps, cfg.policy.scheduler)
    ctx = StepContext(
        policy=policy,
        preprocessor=preprocessor,
        optimizer=optimizer,
        scheduler=scheduler,
        device=device,
        grad_clip_norm=cfg.policy.optimizer.grad_clip_norm,
        autocast=autocast,
        max_consecutive_nonfinite=cfg.training.max_consecutive_nonfinite,
        trainable=[p for p in policy.parameters() if p.requires_grad],
        seed=cfg.training.seed,
        dist=dist,
        accumulation_steps=cfg.training.gradient_accumulation_steps,
    )
    return StageTraining(
        policy,
        preprocessor,
        postprocessor,
        train_set,
        sampler,
        loader,
        epoch_steps,
        total_steps,
        optimizer,
        scheduler,
        ctx,
        data,
        caches,
        adapters,
    )


def _feature_caches(cfg, data, policy, device, autocast, dist: DistContext, echo) -> FeatureCaches | None:
    """Rank 0 builds the caches; the other processes then open them (and follow rank 0's on/off)."""
    built = dist.main_does(lambda: prepare_feature_caches(cfg, data, policy, device, autocast, echo), long_wait=True)
    if not dist.enabled:
        return built
    if not dist.any(built is not None) or dist.is_main:
        return built
    return prepare_feature_caches(cfg, data, policy, device, autocast, echo=lambda _line: None, build=False)
