"""Stages chain through best/, replay is recorded, run-all skips finished stages, overwrite retrains safely.

The run is the session's ``four_stage_run`` (read-only); the overwrite test retrains stage 2 in its own copy.
The end-to-end checks of the whole chain (hashes, initial weights, loss matrix, report): tests/e2e/test_four_stages.py.
"""

import json

import pytest

from kuavo_train.config.load import DEFAULT_CONFIG_DIR
from kuavo_train.curriculum.run_all import run_all
from kuavo_train.curriculum.stage import run_stage
from kuavo_train.layout import MODEL_FILE
from tests.conftest import DEMO_CONFIG, FAST_STAGE, TASK_FILES, copy_run


def test_stage2_starts_from_stage1_best_and_validates_both(four_stage_run):
    results = json.loads(four_stage_run.stage(2).results.read_text())
    assert results["parent_checkpoint"]["path"] == str(four_stage_run.stage(1).best)
    assert set(results["final_validation"]) == {"1", "2"}
    assert results["replay_mix"] == {"task1": 0.2, "task2": 0.8}
    assert results["learning_rate"] == pytest.approx(1e-3)  # the stage-1 lr kept (1e-4), demo lr_scale 10
    assert [f["task_id"] for f in results["forgetting"]] == [1]


def test_run_all_skips_complete_stages(four_stage_run, demo_env, capsys):
    root = four_stage_run.root
    overrides = [*demo_env.overrides, *FAST_STAGE, f"training.output_directory={root}", "training.dry_run=true"]
    code = run_all(DEFAULT_CONFIG_DIR, DEMO_CONFIG, overrides)
    assert code == 0
    out = capsys.readouterr().out
    assert "Plan of stage 3" in out and "samples per epoch" in out
    result = run_stage(demo_env.config(TASK_FILES[0], FAST_STAGE, output=root))
    assert result.status == "skipped"


def test_overwrite_retrains_keeping_old_best_until_done(four_stage_run, demo_env, monkeypatch, tmp_path):
    from kuavo_train.curriculum import stage as stage_module
    from kuavo_train.curriculum.paths import is_stage_complete, stage_paths

    shared = four_stage_run.stage(2)
    shared_before = (shared.results.read_bytes(), shared.log.read_bytes())
    output = copy_run(four_stage_run.root, tmp_path)  # retraining must not touch the shared run
    cfg = demo_env.config(TASK_FILES[1], [*FAST_STAGE, "training.overwrite=true"], output=output)
    paths = stage_paths(cfg)
    old_best = (paths.best / MODEL_FILE).read_bytes()

    def crash(self):
        raise RuntimeError("killed before the end")

    monkeypatch.setattr(stage_module.StageRunner, "_finish", crash)
    with pytest.raises(RuntimeError):
        run_stage(cfg)
    assert (paths.best / MODEL_FILE).read_bytes() == old_best  # old best/ kept
    assert not is_stage_complete(paths)  # the unfinished retraining is not "complete"
    monkeypatch.undo()
    plain = demo_env.config(TASK_FILES[1], FAST_STAGE, output=output)  # rerun without overwrite: resumes it
    assert run_stage(plain).status == "complete"
    assert is_stage_complete(paths) and not paths.retraining_marker.exists()
    assert "Resuming from epoch 1" in paths.log.read_text()
    assert (shared.results.read_bytes(), shared.log.read_bytes()) == shared_before
