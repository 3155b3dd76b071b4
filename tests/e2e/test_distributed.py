"""The trainer under `accelerate launch` with 2 CPU processes (gloo) equals a 1-process run of the same global batch,
and loader workers (batches through shared buffers) change nothing either."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SCRIPT

SETTINGS = ["training.epochs_override=2", "training.max_steps_per_epoch=4", "training.batch_size=8"]


def launch(demo_env, output: Path, processes: int, extra: tuple[str, ...] = ()) -> dict:
    args = demo_env.cli_args("tasks/task1_moving_grasp", output, [*SETTINGS, *extra])
    if processes == 1:
        command = [sys.executable, str(SCRIPT), *args]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", str(processes),
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT), *args]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((output / "task1_moving_grasp" / "training_results.json").read_text())


@pytest.fixture(scope="module")
def single(demo_env, tmp_path_factory) -> dict:
    return launch(demo_env, tmp_path_factory.mktemp("one"), 1)


def test_loader_workers_give_the_same_run(demo_env, tmp_path, single):
    with_workers = launch(demo_env, tmp_path / "workers", 1, ("training.num_workers=2",))
    assert with_workers["train_loss_per_epoch"] == pytest.approx(single["train_loss_per_epoch"], rel=1e-6)
    assert with_workers["validation_history"][-1]["losses"] == pytest.approx(single["validation_history"][-1]["losses"], rel=1e-6)


def test_two_processes_match_one_process(demo_env, tmp_path, single):
    double = launch(demo_env, tmp_path / "two", 2)
    assert double["train_loss_per_epoch"] == pytest.approx(single["train_loss_per_epoch"], rel=1e-4)
    for a, b in zip(single["validation_history"], double["validation_history"]):
        assert a["step"] == b["step"] and b["losses"]["1"] == pytest.approx(a["losses"]["1"], rel=1e-4)
    # Only rank 0 writes: one log, one results file, no duplicate TensorBoard runs.
    assert len(list((tmp_path / "two" / "task1_moving_grasp" / "tensorboard").glob("events.*"))) == 1
