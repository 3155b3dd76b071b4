"""The closed-loop benchmark command end to end, at smoke size, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("sim_available")


def test_smoke_run_trains_evaluates_and_writes_the_tables(tmp_path):
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
    proc = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Closed-loop success of the final model per task" in proc.stdout

    summary = json.loads((out / "sim_results.json").read_text())
    naive, joint = summary["strategies"]["naive"], summary["strategies"]["joint"]
    assert sorted(naive["success_matrix"]) == ["1", "2", "3", "4"]  # one row per stage's best/
    assert list(joint["success_matrix"]) == ["4"]  # the joint run has one model
    for result in (naive, joint):
        for row in result["success_matrix"].values():
            assert sorted(row) == ["1", "2", "3", "4"] and all(0.0 <= v <= 1.0 for v in row.values())
        assert result["loss_matrix"], "the validation-loss matrix of the same run belongs next to the successes"
        assert all(len(episodes) == 1 for episodes in result["episodes"].values())  # --smoke: one episode each
    assert naive["bwt_success"] is not None and joint["bwt_success"] is None
    # Same budget: --smoke is 1 epoch x 2 steps per stage, so 4 x 2 steps for naive and for the joint run.
    assert naive["optimizer_steps"] == joint["optimizer_steps"] == 8
    for task_dir in ("task1_reach", "task2_push", "task3_pick_place", "task4_drawer_close"):
        assert (out / "naive" / task_dir / "best" / "model.safetensors").is_file()

    # What it ran on, from the config (tiny backbone, training.device=cpu) and the checkpoint it trained.
    assert summary["model"]["vlm"] == "tiny_smolvlm" and summary["model"]["vlm_weights"] == "random init"
    assert summary["model"]["parameters"] > 0 and summary["device"]["device"] == "cpu"

    page = (docs / "benchmarks.md").read_text()
    assert "| naive |" in page and "| joint |" in page and "benchmarks/sim/run.py --smoke" in page
    assert "Model: VLM backbone `tiny_smolvlm` (random init, 4 layers, 2 frozen), 64x64 images" in page
    assert f"Device: cpu (fp32) on {summary['machine']}." in page
    assert (docs / "img" / "sim_success_matrices.png").stat().st_size > 5000


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
