"""The trainer under `accelerate launch` with 2 CPU processes (gloo) equals a 1-process run of the same global batch,
and loader workers (batches through shared buffers) change nothing either."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SCRIPT

SETTINGS = ["training.epochs_override=2", "training.max_steps_per_epoch=4", "training.batch_size=8"]


def command_for(processes: int, script: Path, args: list[str]) -> list[str]:
    if processes == 1:
        return [sys.executable, str(script), *args]
    # --multi_gpu makes accelerate start torch.distributed.run (on a CPU-only machine: gloo); with --cpu it
    # would start ONE process whatever --num_processes says.
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(script),
        *args,
    ]


def launch(demo_env, output: Path, processes: int, extra: tuple[str, ...] = ()) -> dict:
    args = demo_env.cli_args("tasks/task1_moving_grasp", output, [*SETTINGS, *extra])
    result = subprocess.run(
        command_for(processes, SCRIPT, args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (f"batch 8 = {processes} processes x {8 // processes}" in result.stdout) == (processes > 1), result.stdout[
        -2000:
    ]
    return json.loads((output / "task1_moving_grasp" / "training_results.json").read_text())


@pytest.fixture(scope="module")
def single(demo_env, tmp_path_factory) -> dict:
    return launch(demo_env, tmp_path_factory.mktemp("one"), 1)


def test_loader_workers_give_the_same_run(demo_env, tmp_path, single):
    with_workers = launch(demo_env, tmp_path / "workers", 1, ("training.num_workers=2",))
    assert with_workers["train_loss_per_epoch"] == pytest.approx(single["train_loss_per_epoch"], rel=1e-6)
    assert with_workers["validation_history"][-1]["losses"] == pytest.approx(
        single["validation_history"][-1]["losses"], rel=1e-6
    )


def test_two_processes_match_one_process(demo_env, tmp_path, single):
    double = launch(demo_env, tmp_path / "two", 2)
    assert double["train_loss_per_epoch"] == pytest.approx(single["train_loss_per_epoch"], rel=1e-4)
    for a, b in zip(single["validation_history"], double["validation_history"], strict=True):
        assert a["step"] == b["step"] and b["losses"]["1"] == pytest.approx(a["losses"]["1"], rel=1e-4)
    # Only rank 0 writes: one log, one results file, no duplicate TensorBoard runs.
    assert len(list((tmp_path / "two" / "task1_moving_grasp" / "tensorboard").glob("events.*"))) == 1


def test_two_processes_accumulating_two_micro_batches_match_one_process(demo_env, tmp_path, single):
    """2 processes x 2 samples x 2 micro-batches: the same 8 samples per optimizer step as batch 8."""
    args = demo_env.cli_args(
        "tasks/task1_moving_grasp",
        tmp_path / "acc",
        [*SETTINGS, "training.batch_size=4", "training.gradient_accumulation_steps=2"],
    )
    result = subprocess.run(command_for(2, SCRIPT, args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 4 = 2 processes x 2" in result.stdout, result.stdout[-2000:]
    accumulated = json.loads((tmp_path / "acc" / "task1_moving_grasp" / "training_results.json").read_text())
    assert accumulated["optimizer_steps"] == single["optimizer_steps"] and accumulated["effective_batch_size"] == 8
    assert accumulated["train_loss_per_epoch"] == pytest.approx(single["train_loss_per_epoch"], rel=1e-4)
    for a, b in zip(single["validation_history"], accumulated["validation_history"], strict=True):
        assert a["step"] == b["step"] and b["losses"]["1"] == pytest.approx(a["losses"]["1"], rel=1e-4)


def test_an_error_on_one_rank_stops_every_rank_promptly(demo_env, tmp_path):
    from tests.e2e.fail_on_rank1 import MESSAGE

    args = demo_env.cli_args("tasks/task1_moving_grasp", tmp_path / "out", SETTINGS)
    started = time.monotonic()
    result = subprocess.run(
        command_for(2, Path(__file__).with_name("fail_on_rank1.py"), args),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Not the process-group timeout (minutes): the launcher tears the other rank down at once.
    assert time.monotonic() - started < 120
    assert result.returncode != 0
    assert MESSAGE in result.stderr
    assert "Stage 1 done" not in result.stdout
    assert not (tmp_path / "out" / "task1_moving_grasp" / "best").exists()
