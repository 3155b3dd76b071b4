"""Deterministic validation loss on held-out episodes of each task.

Each validation sample carries a seed; its flow-matching noise and time are drawn from that seed,
so two evaluations of the same weights give the same number and epochs are comparable.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from kuavo_train.data.constants import ACTION_DIM_MASK, SAMPLE_SEED
from kuavo_train.data.transfer import PREFETCH_FACTOR, SharedBufferLoader
from kuavo_train.policy.loss import fixed_noise_and_time, per_sample_loss, prepare_batch


def limit_samples(dataset: Dataset, max_samples: int | None) -> Dataset:
    """An evenly spaced subset of at most ``max_samples`` samples (deterministic)."""
    if max_samples is None or len(dataset) <= max_samples:
        return dataset
    step = len(dataset) / max_samples
    return Subset(dataset, [int(i * step) for i in range(max_samples)])


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle_sampler=None) -> DataLoader:
    """Batches of dicts; with workers, each batch crosses processes as one shared buffer."""
    workers = num_workers > 0
    return (SharedBufferLoader if workers else DataLoader)(
        dataset,
        batch_size=batch_size,
        sampler=shuffle_sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers,
        prefetch_factor=PREFETCH_FACTOR if workers else None,
        drop_last=False,
        # Its own generator: creating an iterator must not consume the global RNG (resume exactness).
        generator=torch.Generator().manual_seed(0),
    )


def rank_shard(dataset: Dataset, world_size: int, rank: int) -> Dataset:
    """Every ``world_size``-th sample from ``rank``: validation split across processes."""
    if world_size <= 1:
        return dataset
    return Subset(dataset, list(range(rank, len(dataset), world_size)))


@torch.no_grad()
def validation_loss(
    policy, preprocessor, loader: DataLoader, device: torch.device, autocast=nullcontext, dist=None
) -> float:
    """Mean per-sample loss over ``loader`` with fixed per-sample noise/time (summed across ranks when ``dist``)."""
    was_training = policy.training
    policy.eval()
    total, count = 0.0, 0
    for raw in loader:
        batch, side = prepare_batch(raw, preprocessor, device)
        dim_mask = side[ACTION_DIM_MASK].to(device)
        noise, time = fixed_noise_and_time(
            side[SAMPLE_SEED], policy.config.chunk_size, policy.config.max_action_dim, device
        )
        with autocast():
            losses = per_sample_loss(policy, batch, dim_mask, noise=noise, time=time, side=side)
        total += float(losses.float().sum())
        count += len(losses)
    policy.train(was_training)
    if dist is not None and dist.enabled:
        sums = dist.all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64, device=dist.device))
        total, count = float(sums[0]), int(sums[1])
    return total / max(count, 1)


def validate_tasks(
    policy,
    preprocessor,
    loaders: dict[int, DataLoader],
    device: torch.device,
    autocast=nullcontext,
    echo=print,
    dist=None,
    routed=None,
) -> dict[int, float]:
    """Validation loss per task id, printing the multi-task validation block of SPEC section 5.

    ``routed(task_id)``: a context manager that runs the task's own weights (per-task LoRA adapters)."""
    ids = sorted(loaders)
    echo(
        f"🔍 Multi-Task Validation (Tasks {ids[0]}-{ids[-1]})"
        if len(ids) > 1
        else f"🔍 Multi-Task Validation (Task {ids[0]})"
    )
    losses = {}
    for task_id in ids:
        echo(f"📊 Validating Task {task_id}...")
        with routed(task_id) if routed else nullcontext():
            losses[task_id] = validation_loss(policy, preprocessor, loaders[task_id], device, autocast, dist)
        echo(f"  Task {task_id} Validation Loss: {losses[task_id]:.4f}")
    return losses
