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


def _worker(rank: int, port: int, out_dir) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    ctx = DistContext(world_size=2, rank=rank)
    outcome = "not reached"
    try:
        assert ctx.main_does(lambda: "written") == ("written" if rank == 0 else None)

        def fail() -> None:
            raise OSError("disk full")

        ctx.main_does(fail)
        outcome = "no error"
    except OSError as exc:
        outcome = f"OSError: {exc}"
    except KuavoError as exc:
        outcome = f"KuavoError: {exc}"
    finally:
        dist.destroy_process_group()
        (out_dir / f"rank{rank}.txt").write_text(outcome)


def test_rank0_error_reaches_every_rank(tmp_path):
    mp.start_processes(_worker, args=(_free_port(), tmp_path), nprocs=2, start_method="spawn", join=True)
    assert (tmp_path / "rank0.txt").read_text() == "OSError: disk full"
    assert (tmp_path / "rank1.txt").read_text().startswith("KuavoError: rank 0 failed")


def test_single_process_runs_and_raises_directly():
    ctx = DistContext()
    assert ctx.main_does(lambda: 3) == 3
    with pytest.raises(OSError, match="disk full"):
        ctx.main_does(lambda: (_ for _ in ()).throw(OSError("disk full")))
