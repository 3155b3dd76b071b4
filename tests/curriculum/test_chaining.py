"""Stages chain through best/, replay is recorded, run-all skips finished stages."""

import json

import pytest

from kuavo_train.config.load import DEFAULT_CONFIG_DIR
from kuavo_train.curriculum.run_all import run_all
from kuavo_train.curriculum.stage import run_stage
from tests.conftest import DEMO_CONFIG, TASK_FILES

FAST = ["training.epochs_override=1", "training.max_steps_per_epoch=4", "training.max_validation_samples=8"]


@pytest.fixture(scope="module")
def two_stages(demo_env, tmp_path_factory):
    output = tmp_path_factory.mktemp("chain") / "run"
    for task_file in TASK_FILES[:2]:
        result = run_stage(demo_env.config(task_file, FAST, output=output))
        assert result.status == "complete"
    return output


def test_stage2_starts_from_stage1_best_and_validates_both(two_stages):
    results = json.loads((two_stages / "task2_weighing" / "training_results.json").read_text())
    assert results["parent_checkpoint"]["path"] == str(two_stages / "task1_moving_grasp" / "best")
    assert results["parent_checkpoint"]["model_sha256"]
    assert set(results["final_validation"]) == {"1", "2"}
    assert results["replay_mix"] == {"task1": 0.2, "task2": 0.8}
    assert results["learning_rate"] == pytest.approx(5e-4)  # demo lr_scale 10
    assert [f["task_id"] for f in results["forgetting"]] == [1]


def test_curriculum_results_hold_the_matrix(two_stages):
    payload = json.loads((two_stages / "curriculum_results.json").read_text())
    assert set(payload["loss_matrix"]) == {"1", "2"}
    assert set(payload["loss_matrix"]["2"]) == {"1", "2", "3", "4"}
    assert payload["metrics"]["bwt"]["2"] is not None


def test_run_all_skips_complete_stages(two_stages, demo_env, capsys):
    code = run_all(DEFAULT_CONFIG_DIR, DEMO_CONFIG, [*demo_env.overrides, *FAST, f"training.output_directory={two_stages}",
                                                      "training.dry_run=true"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Plan of stage 3" in out and "samples per epoch" in out
    result = run_stage(demo_env.config(TASK_FILES[0], FAST, output=two_stages))
    assert result.status == "skipped"


def test_overwrite_retrains_keeping_old_best_until_done(two_stages, demo_env, monkeypatch):
    from kuavo_train.curriculum import stage as stage_module
    from kuavo_train.curriculum.paths import is_stage_complete, stage_paths

    cfg = demo_env.config(TASK_FILES[1], [*FAST, "training.overwrite=true"], output=two_stages)
    paths = stage_paths(cfg)
    old_best = (paths.best / "model.safetensors").read_bytes()

    def crash(self):
        raise RuntimeError("killed before the end")

    monkeypatch.setattr(stage_module.StageRunner, "_finish", crash)
    with pytest.raises(RuntimeError):
        run_stage(cfg)
    assert (paths.best / "model.safetensors").read_bytes() == old_best  # old best/ kept
    assert not is_stage_complete(paths)  # the unfinished retraining is not "complete"
    monkeypatch.undo()
    plain = demo_env.config(TASK_FILES[1], FAST, output=two_stages)  # rerun without overwrite: resumes it
    assert run_stage(plain).status == "complete"
    assert is_stage_complete(paths) and not paths.retraining_marker.exists()
    assert "Resuming from epoch 1" in (paths.stage_dir / "smolvla_sequential_training.log").read_text()
