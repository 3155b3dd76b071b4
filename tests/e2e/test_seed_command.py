"""The seed's command, run for real in a subprocess (demo settings), and what it must produce."""

import json
import shlex
import subprocess

import pytest
import torch

from tests.conftest import REPO_ROOT, SEED_RUN_EXTRA, TASK_FILES, run_seed_command


@pytest.fixture(scope="module")
def stage1(seed_stage1):
    return seed_stage1


def test_outputs_are_what_the_spec_promises(stage1):
    output, result = stage1
    stage_dir = output / "task1_moving_grasp"
    for name in (
        "model.safetensors",
        "config.json",
        "policy_preprocessor.json",
        "policy_postprocessor.json",
        "kuavo_schema.json",
    ):
        assert (stage_dir / "best" / name).is_file(), name
    assert sorted(p.name for p in stage_dir.glob("epoch*")) == ["epoch2", "epoch3"]  # keep_last_epochs=2 pruned epoch1
    assert (stage_dir / "last" / "training_state.pt").is_file()
    assert not (stage_dir / "best_running").exists()
    results = json.loads((stage_dir / "training_results.json").read_text())
    for key in (
        "task_id",
        "task_name",
        "description",
        "language_instruction",
        "best_loss",
        "final_validation",
        "training_epochs",
        "learning_rate",
        "seed",
        "timings_s",
        "config",
        "stats_hash",
    ):
        assert key in results, key
    assert results["task_id"] == 1 and results["training_epochs"] == 3 and set(results["final_validation"]) == {"1"}
    assert (stage_dir / "smolvla_sequential_training.log").read_text().count("Task 1 Validation Loss") >= 3
    assert "🔍 Multi-Task Validation (Task 1)" in result.stdout
    assert (output / "normalization_stats.json").is_file() and (output / "splits.json").is_file()
    assert json.loads((output / "curriculum_results.json").read_text())["loss_matrix"]["1"].keys() == {
        "1",
        "2",
        "3",
        "4",
    }


def test_validation_loss_goes_down(stage1):
    output, _ = stage1
    history = json.loads((output / "task1_moving_grasp" / "training_results.json").read_text())["validation_history"]
    losses = [entry["losses"]["1"] for entry in history]
    assert len(losses) == 3 and min(losses[1:]) < losses[0]


def test_tensorboard_has_the_tags(stage1):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output, _ = stage1
    events = EventAccumulator(str(output / "task1_moving_grasp" / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "validation/task1_loss"} <= set(events.Tags()["scalars"])


def test_best_reloads_in_plain_lerobot_with_the_same_validation_loss(stage1, demo_env):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.processor import PolicyProcessorPipeline

    from kuavo_train.data.prepare import prepare_curriculum_data, task_dataset
    from kuavo_train.evaluation.validate import limit_samples, make_loader, validation_loss

    output, _ = stage1
    best = output / "task1_moving_grasp" / "best"
    policy = SmolVLAPolicy.from_pretrained(best)
    preprocessor = PolicyProcessorPipeline.from_pretrained(best, config_filename="policy_preprocessor.json")
    cfg = demo_env.config(output=output)
    data = prepare_curriculum_data(cfg, output)
    dataset = limit_samples(
        task_dataset(data, 1, data.splits[1].val, cfg.policy.chunk_size), cfg.training.max_validation_samples
    )
    loss = validation_loss(policy, preprocessor, make_loader(dataset, 8, 0), torch.device("cpu"))
    results = json.loads((output / "task1_moving_grasp" / "training_results.json").read_text())
    assert loss == pytest.approx(results["final_validation"]["1"], rel=1e-5)


def test_same_seed_same_losses(stage1, demo_env, tmp_path):
    output, _ = stage1
    again = run_seed_command(demo_env, tmp_path / "run", extra=SEED_RUN_EXTRA)
    assert again.returncode == 0, again.stderr[-3000:]
    first = json.loads((output / "task1_moving_grasp" / "training_results.json").read_text())
    second = json.loads((tmp_path / "run" / "task1_moving_grasp" / "training_results.json").read_text())
    assert first["validation_history"] == second["validation_history"]
    assert first["train_loss_per_epoch"] == second["train_loss_per_epoch"]


def test_rerun_of_a_complete_stage_says_so(stage1, demo_env):
    output, _ = stage1
    result = run_seed_command(demo_env, output)
    assert result.returncode == 0 and "already complete" in result.stdout


def test_stage2_without_stage1_names_the_command(demo_env, tmp_path):
    result = run_seed_command(demo_env, tmp_path / "empty", task_file=TASK_FILES[1])
    assert result.returncode == 2
    assert "train stage 1 first" in result.stderr and "task=tasks/task1_moving_grasp" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # The printed command is runnable as printed (here in dry-run form) and carries the user's overrides.
    command = shlex.split(result.stderr.split("train stage 1 first: ", 1)[1])
    assert all(o in command for o in demo_env.overrides) and "--config-name=smolvla_sequential_demo" in command
    rerun = subprocess.run(
        [*command, "training.dry_run=true"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Plan of stage 1 (task1_moving_grasp)" in rerun.stdout
