"""Kill a stage mid-training and rerun the same command: it resumes and ends with the weights of an
uninterrupted run, bit for bit.

The kill comes from the loop's test-only hook (``KUAVO_TEST_KILL_AFTER_STEP=N[:SIGNAL]``,
kuavo_train/training/loop.py): the process signals itself right after optimizer step N, in the
middle of epoch 2, so the test never races the training and never skips.
"""

import json
import os
import signal
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from kuavo_train.curriculum.paths import stage_paths
from kuavo_train.layout import LOG_FILE, MODEL_FILE
from kuavo_train.training.checkpoint import load_training_state, read_checkpoint_meta
from kuavo_train.training.loop import TEST_KILL_ENV
from tests.conftest import SEED_RUN_EXTRA, run_seed_command


def stage_of(demo_env, output):
    return stage_paths(demo_env.config(extra=SEED_RUN_EXTRA, output=output))


def results(paths) -> dict:
    return json.loads(paths.results.read_text())


def run_until_step(demo_env, output, step: int, sig: signal.Signals) -> subprocess.CompletedProcess:
    """Stage 1 as the seed command trains it, signalling itself with ``sig`` right after optimizer step ``step``."""
    env = {**os.environ, TEST_KILL_ENV: f"{step}:{sig.name}"}
    return run_seed_command(demo_env, output, extra=SEED_RUN_EXTRA, env=env)


def assert_same_weights(mine, theirs) -> None:
    """Every tensor of two model.safetensors files equal, exactly (CPU training is deterministic)."""
    ours, reference = load_file(mine / MODEL_FILE), load_file(theirs / MODEL_FILE)
    assert ours.keys() == reference.keys()
    differing = [k for k in ours if not torch.equal(ours[k], reference[k])]
    if differing:
        first = differing[0]
        pytest.fail(
            f"{len(differing)} of {len(ours)} tensors differ in {mine} vs {theirs}, e.g. {first}: "
            f"max |diff| {(ours[first] - reference[first]).abs().max():.3g}"
        )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_interrupted_stage_resumes_to_the_same_weights(demo_env, seed_stage1, tmp_path, sig):
    reference_paths = stage_of(demo_env, seed_stage1[0])
    reference = results(reference_paths)
    steps_per_epoch = reference["optimizer_steps"] // reference["training_epochs"]
    assert steps_per_epoch >= 2, reference["optimizer_steps"]
    kill_step = steps_per_epoch + steps_per_epoch // 2  # mid epoch 2: epoch 1's last/ is on disk

    output = tmp_path / "run"
    paths = stage_of(demo_env, output)
    killed = run_until_step(demo_env, output, kill_step, sig)
    assert killed.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130), killed.stderr[-2000:]
    assert not paths.results.exists() and not paths.best.exists()
    saved = load_training_state(paths.last)["loop"]
    if sig == signal.SIGKILL:  # died without a word: last/ is epoch 1's end
        resumed_at = steps_per_epoch
        assert (saved["epoch"], saved["step"], saved["batches_into_epoch"]) == (1, steps_per_epoch, 0)
    else:  # the graceful stop: last/ holds the mid-epoch position after step kill_step
        resumed_at = kill_step
        mid_epoch = kill_step - steps_per_epoch  # batches of epoch 2 done (one per step: no accumulation)
        assert (saved["epoch"], saved["step"], saved["batches_into_epoch"]) == (1, kill_step, mid_epoch)
        assert "state saved to" in (paths.stage_dir / LOG_FILE).read_text()
    assert read_checkpoint_meta(paths.last)["step"] == resumed_at

    rerun = run_seed_command(demo_env, output, extra=SEED_RUN_EXTRA)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"Resuming from epoch 1 step {resumed_at}" in rerun.stdout
    assert_same_weights(paths.best, reference_paths.best)
    assert_same_weights(paths.last, reference_paths.last)
    mine = results(paths)
    assert mine["optimizer_steps"] == reference["optimizer_steps"]
    assert mine["best_epoch"] == reference["best_epoch"] and mine["best_loss"] == reference["best_loss"]
    assert mine["train_loss_per_epoch"] == pytest.approx(reference["train_loss_per_epoch"], rel=1e-12)
    assert mine["validation_history"] == reference["validation_history"]
