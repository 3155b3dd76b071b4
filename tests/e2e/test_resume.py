"""Kill a stage mid-training and rerun the same command: it resumes and ends where an uninterrupted run ends."""

import json
import signal
import subprocess
import time

import pytest

from tests.conftest import REPO_ROOT, SEED_RUN_EXTRA, run_seed_command, seed_command


def start_and_interrupt(demo_env, output, sig) -> subprocess.Popen:
    """Start stage 1; once epoch 1's resumable state exists, send ``sig``."""
    process = subprocess.Popen(seed_command(demo_env, output, extra=SEED_RUN_EXTRA), cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    meta = output / "task1_moving_grasp" / "last" / "kuavo_checkpoint.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if meta.is_file():
            time.sleep(0.3)  # into epoch 2
            process.send_signal(sig)
            break
        time.sleep(0.02)
    process.communicate(timeout=300)
    return process


def results(output):
    return json.loads((output / "task1_moving_grasp" / "training_results.json").read_text())


def assert_same_training(resumed, reference):
    assert [v["epoch"] for v in resumed["validation_history"]] == [v["epoch"] for v in reference["validation_history"]]
    for mine, theirs in zip(resumed["validation_history"], reference["validation_history"]):
        assert mine["step"] == theirs["step"]
        assert mine["losses"]["1"] == pytest.approx(theirs["losses"]["1"], rel=1e-4)
    assert resumed["train_loss_per_epoch"] == pytest.approx(reference["train_loss_per_epoch"], rel=1e-4)
    assert resumed["best_loss"] == pytest.approx(reference["best_loss"], rel=1e-4)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_interrupted_stage_resumes_to_the_same_result(demo_env, seed_stage1, tmp_path, sig):
    output = tmp_path / "run"
    process = start_and_interrupt(demo_env, output, sig)
    if process.returncode == 0:
        pytest.skip("the stage finished before it could be interrupted")
    assert not (output / "task1_moving_grasp" / "training_results.json").exists()
    rerun = run_seed_command(demo_env, output, extra=SEED_RUN_EXTRA)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Resuming from epoch" in rerun.stdout
    assert_same_training(results(output), results(seed_stage1[0]))


def test_sigterm_saves_a_mid_epoch_state(demo_env, tmp_path):
    output = tmp_path / "run"
    process = start_and_interrupt(demo_env, output, signal.SIGTERM)
    assert process.returncode == 130
    meta = json.loads((output / "task1_moving_grasp" / "last" / "kuavo_checkpoint.json").read_text())
    assert meta["epoch"] >= 1
    assert "state saved to" in (output / "task1_moving_grasp" / "smolvla_sequential_training.log").read_text()
