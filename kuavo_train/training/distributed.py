"""Data-parallel training under ``accelerate launch`` (one process per GPU, or gloo on CPU).

Each rank trains on its stride of the replay-mixed stream (``ReplayMixSampler(num_replicas,
rank)``) with ``training.batch_size / world_size`` samples per step; gradients are averaged with
an all-reduce after backward, so a step equals a 1-process step on the global batch. Rank 0 alone
writes checkpoints, results and logs (``main_does``: the other ranks wait, and an error there stops
every rank); validation shards are reduced across ranks.

A single process (plain ``python ...``) never initialises torch.distributed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from kuavo_train.errors import KuavoError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    # Device of the tensors exchanged (gloo: cpu, nccl: the rank's GPU).
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def main_does(self, work: Callable[[], T], long_wait: bool = False) -> T | None:
        """Run ``work`` on rank 0 while the other ranks wait; returns its result on rank 0, None elsewhere.

        An error in ``work`` is raised on every rank (the others get a KuavoError pointing at rank 0)
        instead of leaving them blocked at a barrier until the process-group timeout. ``long_wait``: the others
        wait in a gloo group with a timeout of LONG_WAIT instead of the process group's (NCCL: 10 minutes),
        for work that can take hours (building the feature cache).
        """
        result, error = None, None
        if self.is_main:
            try:
                result = work()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the other ranks
                error = exc
        if self.any(error is not None, long_wait):
            if error is not None:
                raise error
            raise KuavoError("rank 0 failed (its error is above); stopping this rank too")
        return result

    def any(self, flag: bool, long_wait: bool = False) -> bool:
        """True on every rank when ``flag`` is True on any rank (``long_wait``: see `main_does`)."""
        if not self.enabled:
            return flag
        if long_wait:
            value = torch.tensor([1.0 if flag else 0.0])
            dist.all_reduce(value, op=dist.ReduceOp.MAX, group=_long_wait_group())
        else:
            value = torch.tensor([1.0 if flag else 0.0], device=self.device)
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


LONG_WAIT = timedelta(hours=24)
_GROUPS: dict[str, object] = {}


def _long_wait_group():
    """A gloo group of every rank with a LONG_WAIT timeout (created once, by every rank: a collective call)."""
    if "long_wait" not in _GROUPS:
        _GROUPS["long_wait"] = dist.new_group(backend="gloo", timeout=LONG_WAIT)
    return _GROUPS["long_wait"]


def init_distributed(device_name: str) -> DistContext:
    """Join the process group that ``accelerate launch`` set up (env WORLD_SIZE > 1), else single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistContext()
    from accelerate import PartialState

    state = PartialState(cpu=device_name == "cpu")
    return DistContext(
        world_size=state.num_processes,
        rank=state.process_index,
        local_rank=state.local_process_index,
        device=str(state.device),
    )
