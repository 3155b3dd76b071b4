"""The closed-loop benchmark command end to end, at smoke size, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("sim_available")


def test_smoke_run_pretrains_a_base_trains_from_it_evaluates_and_writes_the_tables(tmp_path):
    out, docs = tmp_path / "sim", tmp_path / "docs"
    command = [
        sys.executable,
        "benchmarks/sim/run.py",
        "--smoke",
        "--strategy",
        "naive",
        "joint",
        "--out",
        str(out),
        "--docs",
        str(docs),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pretrained base on the curriculum tasks: reach" in proc.stdout
    assert "Closed-loop success of the final model per task" in proc.stdout

    summary = json.loads((out / "sim_results.json").read_text())
    naive, joint = summary["strategies"]["naive"]["0"], summary["strategies"]["joint"]["0"]
    assert sorted(naive["success_matrix"]) == ["1", "2"]  # --smoke: 2 tasks, one row per stage's best/
    assert list(joint["success_matrix"]) == ["2"]  # the joint run has one model
    for cell in (naive, joint):
        for row in cell["success_matrix"].values():
            assert sorted(row) == ["1", "2"] and all(0.0 <= v <= 1.0 for v in row.values())
        assert cell["loss_matrix"], "the validation-loss matrix of the same run belongs next to the successes"
        assert len(cell["episodes"]["2/1"]) == 2  # the final model: --final-episodes (2 in --smoke)
    assert len(naive["episodes"]["1/1"]) == 1  # earlier models: --eval-episodes (1 in --smoke)
    assert naive["bwt_success"] is not None and joint["bwt_success"] is None
    # Same budget: --smoke is 1 epoch x 2 steps per stage, so 2 x 2 steps for naive and for the joint run.
    assert naive["optimizer_steps"] == joint["optimizer_steps"] == 4

    # Stage 1 and the joint run start from the pretrained base, a lerobot checkpoint trained on other tasks.
    base = Path(summary["base"]["checkpoint"])
    assert (base / "model.safetensors").is_file() and (base / "config.json").is_file()
    assert set(summary["base"]["zero_shot"]) == {"1", "2"}
    assert f"start from: {base}" in proc.stdout
    assert summary["model"]["pretrained_policy"] == str(base)

    page = (docs / "benchmarks.md").read_text()
    assert "| naive | 1 |" in page and "| joint | 1 |" in page and "benchmarks/sim/run.py --smoke" in page
    assert (docs / "img" / "sim_success_matrices.png").stat().st_size > 5000

    # Resumable: a rerun skips the finished cells and the base (nothing is trained again).
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "[naive seed 0] finished earlier" in again.stdout and "[joint seed 0] finished earlier" in again.stdout
    assert "=== Stage" not in again.stdout


@pytest.mark.parametrize("config_name", ["smolvla_sequential_metaworld", "smolvla_sequential_demo"])
def test_every_strategy_gets_the_same_steps(tmp_path, config_name):
    """Sequential: N steps per epoch in every stage; joint: stages x N per epoch, whatever cap the config has."""
    from benchmarks.strategies import equal_budget, joint_config
    from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config

    budget = equal_budget(epochs=3, steps_per_epoch=150)  # above the metaworld config's own cap of 100
    sequential = load_config(DEFAULT_CONFIG_DIR, config_name, budget)
    joint = joint_config(DEFAULT_CONFIG_DIR, config_name, tmp_path, budget)
    assert sequential.training.steps_per_epoch == 150 and sequential.training.max_steps_per_epoch is None
    assert joint.training.steps_per_epoch == 150 * len(joint.tasks) and joint.training.max_steps_per_epoch is None
    assert joint.task.training.max_epoch == sequential.task.training.max_epoch == 3


@pytest.mark.parametrize(
    ("config_name", "half"),
    [("smolvla_sequential_metaworld", 2), ("smolvla_sequential_demo", 2), ("smolvla_sequential_base", 8)],
)
def test_each_strategy_sets_its_levers_whatever_the_shipped_defaults(config_name, half):
    """seed_guide is the guide's recipe exactly (its lower lr per stage, half the VLM layers frozen), replay and
    replay_freeze keep the stage-1 lr, on every config; the meaning does not move with the configs' defaults."""
    from benchmarks.strategies import strategy_overrides
    from kuavo_train.config.load import DEFAULT_CONFIG_DIR, load_config

    def trained(name):
        """Per stage as run-all loads it (``task=<file>`` last: a ``task.*`` override reaches every stage)."""
        overrides = strategy_overrides(name, DEFAULT_CONFIG_DIR, config_name, [])
        cfg = load_config(DEFAULT_CONFIG_DIR, config_name, overrides)
        lrs = [
            load_config(DEFAULT_CONFIG_DIR, config_name, [*overrides, f"task={f}"]).task.training.lr
            for f in cfg.curriculum
        ]
        return (
            [round(lr / lrs[0], 6) for lr in lrs],
            cfg.policy.freeze_vlm_layers,
            cfg.sequential.use_replay_buffer,
            cfg.policy.peft.mode,
        )

    def stage1_lr(name):
        overrides = strategy_overrides(name, DEFAULT_CONFIG_DIR, config_name, [])
        return load_config(DEFAULT_CONFIG_DIR, config_name, overrides).tasks[0].training.lr

    assert trained("seed_guide") == ([1.0, 0.5, 0.3, 0.2], half, True, "off")
    assert trained("replay_freeze") == ([1.0] * 4, half, True, "off")
    assert trained("replay") == ([1.0] * 4, 0, True, "off")
    assert trained("naive") == ([1.0] * 4, 0, False, "off")
    assert trained("lora_merge") == ([1.0] * 4, 0, True, "merge")
    assert trained("lora_per_task") == ([1.0] * 4, 0, False, "per_task")
    for lora in ("lora_merge", "lora_per_task"):  # LoRA's 10x lr
        assert stage1_lr(lora) == pytest.approx(10 * stage1_lr("replay"))
