"""Data-parallel training under ``accelerate launch`` (one process per GPU, or gloo on CPU).

Each rank trains on its stride of the replay-mixed stream (``ReplayMixSampler(num_replicas,
rank)``) with ``training.batch_size / world_size`` samples per step; gradients are averaged with
an all-reduce after backward, so a step equals a 1-process step on the global batch. Rank 0 alone
writes checkpoints, results and logs; validation shards are reduced across ranks.

A single process (plain ``python ...``) never initialises torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

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

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def init_distributed(device_name: str) -> DistContext:
    """Join the process group that ``accelerate launch`` set up (env WORLD_SIZE > 1), else single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistContext()
    from accelerate import PartialState

    state = PartialState(cpu=device_name == "cpu")
    return DistContext(world_size=state.num_processes, rank=state.process_index,
                       local_rank=state.local_process_index, device=str(state.device))
