"""The whole curriculum, trained for real (``four_stage_run``): each stage starts from the previous stage's best/,
the loss matrix is complete, and the report comes out of the run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from kuavo_train.data.schema import FeatureSchema
from kuavo_train.files import file_sha256
from kuavo_train.layout import (
    CURVES_ALL_PNG,
    LOSS_MATRIX_PNG,
    MODEL_FILE,
    SCHEMA_FILE,
    curves_stage_png,
)
from kuavo_train.reporting.report import write_report

STAGES = [1, 2, 3, 4]
ARMS, WALK, PADDING = slice(0, 16), slice(16, 20), slice(20, None)  # action dims: arms + claws, task 4's walking


def _results(run, stage: int) -> dict:
    return json.loads(run.stage(stage).results.read_text())


@pytest.mark.parametrize("stage", [2, 3, 4])
def test_stage_records_the_hash_of_the_previous_best_it_started_from(four_stage_run, stage):
    parent = _results(four_stage_run, stage)["parent_checkpoint"]
    previous_best = four_stage_run.stage(stage - 1).best
    assert parent["path"] == str(previous_best)
    assert parent["model_sha256"] == file_sha256(previous_best / MODEL_FILE)  # the file as it is on disk


@pytest.mark.parametrize("stage", [2, 3, 4])
def test_stage_starts_from_exactly_the_previous_best_weights(four_stage_run, stage):
    """Not only the recorded path and hash: the weights the stage held before its first step are the file's."""
    previous_best = four_stage_run.stage(stage - 1).best
    assert str(four_stage_run.start_paths[stage]) == str(previous_best)
    saved = load_file(previous_best / MODEL_FILE)
    initial = four_stage_run.initial_weights[stage]
    assert set(saved) == set(initial)  # every weight and buffer of the policy is in the file
    different = [name for name, tensor in saved.items() if not torch.equal(initial[name], tensor)]
    assert not different, f"stage {stage} started with {len(different)} tensors unlike {previous_best}: {different[:3]}"


def test_stage1_starts_fresh_and_training_changes_every_stage(four_stage_run):
    assert four_stage_run.start_paths[1] is None
    assert _results(four_stage_run, 1)["parent_checkpoint"] == {"path": None, "model_sha256": None}
    for stage in STAGES:
        best = load_file(four_stage_run.stage(stage).best / MODEL_FILE)
        initial = four_stage_run.initial_weights[stage]
        changed = [name for name, tensor in best.items() if not torch.equal(initial[name], tensor)]
        assert changed, f"stage {stage}'s best/ holds its initial weights: it did not train"
        assert _results(four_stage_run, stage)["optimizer_steps"] == 2


def _only_rescaled(old: torch.Tensor, new: torch.Tensor) -> bool:
    """``new`` is ``old`` times one scalar (what weight decay alone does to weights that get no gradient)."""
    scale = (new * old).sum() / (old * old).sum()
    return torch.allclose(new, old * scale, rtol=1e-5, atol=1e-9)


def test_stage4_trains_the_walking_dims(four_stage_run):
    results = _results(four_stage_run, 4)
    schema = FeatureSchema.load(four_stage_run.stage(4).best / SCHEMA_FILE)
    assert schema.action_dim == 20 and [t.action_dim for t in schema.tasks] == [16, 16, 16, 20]
    assert results["training_epochs"] == 1 and results["optimizer_steps"] == 2
    assert results["replay_mix"] == {"task1": 0.1, "task2": 0.1, "task3": 0.2, "task4": 0.6}
    assert set(results["final_validation"]) == {"1", "2", "3", "4"}
    assert math.isfinite(results["best_loss"])
    # The action head's rows of the 4 walking dims (16-19) learn only from task 4's data: stages 1-3 (16-dim tasks,
    # masked) leave them as they were, stage 4 trains them. The padding rows (20+) no stage trains.
    for stage in STAGES:
        best = load_file(four_stage_run.stage(stage).best / MODEL_FILE)
        for name in ("model.action_out_proj.weight", "model.action_out_proj.bias"):
            old, new = four_stage_run.initial_weights[stage][name], best[name]
            assert _only_rescaled(old[WALK], new[WALK]) == (stage != 4), (stage, name)
            assert _only_rescaled(old[PADDING], new[PADDING]), (stage, name)
            assert not _only_rescaled(old[ARMS], new[ARMS]), (stage, name)


def test_loss_matrix_has_every_stage_on_every_task(four_stage_run):
    payload = json.loads(four_stage_run.paths.curriculum_results.read_text())
    assert payload["task_order"] == STAGES
    matrix = payload["loss_matrix"]
    assert set(matrix) == {"1", "2", "3", "4"}
    for stage in STAGES:
        row = matrix[str(stage)]
        assert set(row) == {"1", "2", "3", "4"} and all(math.isfinite(v) for v in row.values())
        assert row == _results(four_stage_run, stage)["validation_all_tasks"]  # the same best/ evaluation
    assert payload["metrics"]["bwt"]["1"] is None
    assert all(payload["metrics"]["bwt"][str(s)] is not None for s in (2, 3, 4))


def test_report_comes_out_of_the_run(four_stage_run, tmp_path):
    report = write_report(four_stage_run.root, tmp_path / "report")
    text = report.read_text()
    assert "Stages done: **4 of 4**" in text
    assert f"`{four_stage_run.stage(4).best.resolve()}` (final multi-task model, stage 4 of 4)" in text
    for name in (LOSS_MATRIX_PNG, CURVES_ALL_PNG, *map(curves_stage_png, STAGES)):
        assert (tmp_path / "report" / name).stat().st_size > 5_000 and f"]({name})" in text


def test_timings_account_for_the_whole_stage(four_stage_run):
    parts = (
        "data_preparation",
        "model_build",
        "feature_cache",
        "training",
        "validation",
        "final_evaluation",
        "checkpointing",
    )
    for stage in range(1, 5):
        timings = _results(four_stage_run, stage)["timings_s"]
        assert set(timings) == {*parts, "other", "total"}
        assert all(timings[name] > 0 for name in parts), timings
        assert sum(timings[name] for name in (*parts, "other")) == pytest.approx(timings["total"], rel=1e-6)
        assert timings["other"] <= 0.25 * timings["total"], timings  # the named parts are where the time went
        # the stage's own clock covers the wall time of its run_stage call (the rest: writing the results, closing
        # the logs)
        wall = four_stage_run.stage_seconds[stage]
        assert 0.85 * wall <= timings["total"] <= wall, (stage, timings["total"], wall)
