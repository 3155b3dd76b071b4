"""Replay mixing: one epoch's sample stream over several task datasets at fixed shares.

Epoch length = (current task's training frames) / (current task's share), so each current frame is
seen about once per epoch and replayed frames come on top. Per-task counts are exact (largest
remainder rounding), every task's frames are drawn without replacement (cycling through fresh
permutations when a task has fewer frames than its count), and the stream is shuffled. The order
is a pure function of (seed, epoch, rank), so resuming and multi-process runs are reproducible.
"""

from __future__ import annotations

import math

import numpy as np
from torch.utils.data import Sampler


def samples_per_epoch(current_frames: int, current_share: float) -> int:
    return max(1, math.ceil(current_frames / current_share))


def task_counts(total: int, mix: dict[int, float]) -> dict[int, int]:
    """Split ``total`` samples by ``mix`` shares exactly (largest remainder)."""
    raw = {task: total * share for task, share in mix.items()}
    counts = {task: int(math.floor(value)) for task, value in raw.items()}
    by_remainder = sorted(raw, key=lambda task: raw[task] - counts[task], reverse=True)
    for task in by_remainder[: total - sum(counts.values())]:
        counts[task] += 1
    return counts


class ReplayMixSampler(Sampler[int]):
    """Indices into a ``ConcatDataset`` of task datasets, mixed at ``mix`` shares per epoch.

    Args:
        task_sizes: frames per task, in the ConcatDataset's order (task id -> length).
        mix: share of samples per task id (sums to 1).
        current_task: the stage's task id (defines the epoch length).
        num_replicas, rank: the stream is split across data-parallel processes by striding.
        total: samples per epoch (all ranks) instead of the current task's frames / its share.
    """

    def __init__(
        self,
        task_sizes: dict[int, int],
        mix: dict[int, float],
        current_task: int,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        total: int | None = None,
    ):
        self.task_sizes = dict(task_sizes)
        self.mix = {task: share for task, share in mix.items() if share > 0}
        self.offsets = {}
        offset = 0
        for task, size in self.task_sizes.items():
            self.offsets[task] = offset
            offset += size
        self.total = (
            samples_per_epoch(self.task_sizes[current_task], self.mix[current_task]) if total is None else total
        )
        self.counts = task_counts(self.total, self.mix)
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self._skip = 0

    def set_epoch(self, epoch: int, skip_samples: int = 0) -> None:
        """Select the epoch's stream; ``skip_samples`` (per rank) resumes it mid-epoch."""
        self.epoch = epoch
        self._skip = skip_samples

    def epoch_indices(self) -> np.ndarray:
        """The full (all ranks) shuffled index stream of the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks = []
        for task, count in self.counts.items():
            size = self.task_sizes[task]
            reps = math.ceil(count / size)
            draws = np.concatenate([rng.permutation(size) for _ in range(reps)])[:count]
            chunks.append(draws + self.offsets[task])
        stream = np.concatenate(chunks)
        return stream[rng.permutation(len(stream))]

    def __iter__(self):
        stream = self.epoch_indices()
        per_rank = len(self)
        mine = stream[self.rank : per_rank * self.num_replicas : self.num_replicas].tolist()
        return iter(mine[self._skip :])

    def __len__(self) -> int:
        return self.total // self.num_replicas
