"""An error on rank 0 inside a rank-0-only section stops every rank (no hang at a barrier)."""

from __future__ import annotations

import os
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from kuavo_train.errors import KuavoError
from kuavo_train.training.distributed import DistContext


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    ctx = DistContext(world_size=2, rank=rank)
    try:
        assert ctx.main_does(lambda: "written") == ("written" if rank == 0 else None)

        def fail() -> None:
            raise OSError("disk full")

        ctx.main_does(fail)
        results[rank] = "no error"
    except OSError as exc:
        results[rank] = f"OSError: {exc}"
    except KuavoError as exc:
        results[rank] = f"KuavoError: {exc}"
    finally:
        dist.destroy_process_group()


def test_rank0_error_reaches_every_rank():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(_worker, args=(_free_port(), results), nprocs=2, start_method="spawn", join=True)
        assert results[0] == "OSError: disk full"
        assert results[1].startswith("KuavoError: rank 0 failed")


def test_single_process_runs_and_raises_directly():
    ctx = DistContext()
    assert ctx.main_does(lambda: 3) == 3
    with pytest.raises(OSError, match="disk full"):
        ctx.main_does(lambda: (_ for _ in ()).throw(OSError("disk full")))
