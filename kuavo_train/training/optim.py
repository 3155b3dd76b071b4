"""Optimizer and lr schedule of a stage (fresh every stage): AdamW + linear warmup + cosine decay."""

from __future__ import annotations

import torch

from kuavo_train.config.schema import OptimizerConfig, SchedulerConfig


def make_optimizer(policy, lr: float, cfg: OptimizerConfig, device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in policy.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        params,
        lr=lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        # One fused kernel per step instead of a loop over parameters (3x faster on the CPU too), and no
        # per-parameter read of the step counters.
        fused=device.type in ("cuda", "cpu"),
    )


def make_scheduler(optimizer: torch.optim.Optimizer, lr: float, total_steps: int, cfg: SchedulerConfig):
    """lerobot's cosine-with-warmup schedule, spanning exactly this stage's optimizer steps."""
    from lerobot.optim.schedulers import CosineDecayWithWarmupSchedulerConfig

    schedule = CosineDecayWithWarmupSchedulerConfig(
        num_warmup_steps=int(cfg.warmup_ratio * total_steps),
        num_decay_steps=max(total_steps, 1),
        peak_lr=lr,
        decay_lr=lr * cfg.decay_lr_ratio,
    )
    return schedule.build(optimizer, num_training_steps=max(total_steps, 1))
