"""`kuavo-train report` on the session's real four-stage run: report.md and readable PNGs out.

Every expected number comes from the run's own JSON files. Tests that write into the run dir, or damage it for an
edge case, work on a copy (``copy_run``); the shared run is only read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from kuavo_train.cli import main as cli_main
from kuavo_train.errors import KuavoError
from kuavo_train.files import write_json_atomically
from kuavo_train.layout import (
    CURVES_ALL_PNG,
    INSTRUCTION_MATRIX_PNG,
    LOSS_MATRIX_PNG,
    REPORT_DIR,
    REPORT_FILE,
    RunPaths,
    curves_stage_png,
)
from kuavo_train.reporting import plots
from kuavo_train.reporting.read import read_run
from kuavo_train.reporting.report import publish_report, report_main, write_report
from tests.conftest import copy_run

STAGES = [1, 2, 3, 4]


@pytest.fixture
def run_copy(four_stage_run, tmp_path) -> Path:
    return copy_run(four_stage_run.root, tmp_path)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _label(curriculum: dict, task) -> str:
    return f"task{task} {curriculum['task_names'][str(task)]}"


def _check_png(path: Path, figsize: tuple[float, float]) -> None:
    assert path.is_file(), path
    assert path.stat().st_size > 5_000, f"{path.name} is only {path.stat().st_size} bytes"
    image = mpimg.imread(path)
    assert image.shape[:2] == plots.figure_pixels(figsize), path.name
    assert image[..., :3].std() > 0.05, f"{path.name} looks blank"


def _one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_report_has_tables_and_pictures(four_stage_run, run_copy):
    report = write_report(run_copy)

    out = run_copy / REPORT_DIR
    assert report == out / REPORT_FILE
    _check_png(out / LOSS_MATRIX_PNG, plots.loss_matrix_figsize(4, 4))
    for stage in STAGES:
        _check_png(out / curves_stage_png(stage), plots.curves_stage_figsize())
    _check_png(out / CURVES_ALL_PNG, plots.curves_all_figsize(4))
    assert not (out / INSTRUCTION_MATRIX_PNG).exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".report-tmp")]

    text = report.read_text()
    paths = RunPaths(run_copy)
    curriculum = _json(paths.curriculum_results)
    assert "Stages done: **4 of 4**" in text
    final = paths.stage(four_stage_run.stage(4).stage_dir.name).best.resolve()
    assert f"`{final}` (final multi-task model, stage 4 of 4)" in text
    for stage, row in curriculum["loss_matrix"].items():
        for task, value in row.items():
            cell = f"{value:.4f}"
            if task == stage:
                cell = f"**{cell}**"  # the task trained in that stage
            elif int(task) > int(stage):
                cell = f"*{cell}*"  # not trained yet
            assert f"| {cell} |" in text, (stage, task, cell)
    assert f"{curriculum['metrics']['bwt']['4']:+.4f}" in text
    assert "(no TensorBoard curves" not in text  # every stage logged its curves

    for stage in STAGES:
        results = _json(four_stage_run.stage(stage).results)
        verdict = "✅ all passed" if all(c["passed"] for c in results["criteria"]) else "❌ failed"
        assert f"### Stage {stage}: {_label(curriculum, stage)} — {verdict}" in text
        for c in results["criteria"]:
            assert (
                f"| {_label(curriculum, c['task_id'])} | {c['role']} | {c['loss']:.4f} | {c['limit']:.3f} | "
                f"{'✅ pass' if c['passed'] else '❌ fail'} |"
            ) in text
        for f in results["forgetting"]:
            since_best = curriculum["metrics"]["forgetting"][str(stage)][str(f["task_id"])]
            assert (
                f"| {stage} | {_label(curriculum, f['task_id'])} | {f['loss']:.4f} | {f['reference']:.4f} | "
                f"x{f['loss'] / f['reference']:.2f} | {f['verdict']} | {since_best:+.4f} |"
            ) in text
        per_step = results["timings_s"]["training"] / results["optimizer_steps"]
        assert f"| {stage} ({_label(curriculum, stage)}) |" in text and f"| {per_step:.3f} |" in text
    assert f"kuavo-train evaluate {final}" in text
    for name in (LOSS_MATRIX_PNG, CURVES_ALL_PNG, *map(curves_stage_png, STAGES)):
        assert f"]({name})" in text


def test_rendering_needs_only_the_data_read(run_copy, tmp_path):
    """Everything shown comes from the RunData: render it after the run dir is gone."""
    run = read_run(run_copy)
    final = run.stages[-1].best_dir
    shutil.rmtree(run_copy)

    text = publish_report(run, tmp_path / "out").read_text()

    assert "Stages done: **4 of 4**" in text
    assert f"`{final}` (final multi-task model, stage 4 of 4)" in text
    assert "(no TensorBoard curves" not in text
    for name in (LOSS_MATRIX_PNG, CURVES_ALL_PNG, *map(curves_stage_png, STAGES)):
        assert (tmp_path / "out" / name).is_file() and f"]({name})" in text


def test_instruction_matrix_is_drawn_and_stale_pictures_removed(run_copy, tmp_path):
    write_json_atomically(
        RunPaths(run_copy).instruction_matrix,
        {
            "instructions": [1, 2, 3, 4],
            "tasks": [1, 4],
            "mse": [[0.21, 1.4], [0.8, 0.9], [0.7, 1.1], [0.5, 0.33]],
            "margin": 0.29,
        },
    )
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / curves_stage_png(7)).write_bytes(b"old")
    (out / "notes.txt").write_text("mine")

    text = write_report(run_copy, out).read_text()

    _check_png(out / INSTRUCTION_MATRIX_PNG, plots.instruction_matrix_figsize(4, 2))
    assert f"![instruction matrix]({INSTRUCTION_MATRIX_PNG})" in text
    assert "| task1 moving_grasp | **0.2100** | 1.4000 |" in text and "| task4 sorting | 0.5000 | **0.3300** |" in text
    assert "Margin: **0.2900**" in text
    assert not (out / curves_stage_png(7)).exists()  # an older report's picture
    assert (out / "notes.txt").read_text() == "mine"  # not ours: left alone

    RunPaths(run_copy).instruction_matrix.unlink()
    text = write_report(run_copy, out).read_text()
    assert not (out / INSTRUCTION_MATRIX_PNG).exists()
    assert "kuavo-train evaluate" in text


def test_stage_still_training_gets_its_curves(four_stage_run, run_copy):
    """The run as it is while stage 4 trains: its TensorBoard events, no results, no best/, matrix rows 1-3."""
    stage4 = RunPaths(run_copy).stage(four_stage_run.stage(4).stage_dir.name)
    stage4.results.unlink()
    shutil.rmtree(stage4.best)
    curriculum = _json(RunPaths(run_copy).curriculum_results)
    del curriculum["loss_matrix"]["4"]
    for values in curriculum["metrics"].values():
        values.pop("4")
    write_json_atomically(RunPaths(run_copy).curriculum_results, curriculum)

    text = write_report(run_copy).read_text()

    _check_png(run_copy / REPORT_DIR / curves_stage_png(4), plots.curves_stage_figsize())
    assert "### Stage 4: task4 sorting (in progress)" in text
    assert "| 4 | task4 sorting | in progress |" in text
    assert "| 4 (task4 sorting) | not run |" in text
    assert "Stages done: **3 of 4**" in text
    assert "(latest model: stage 3 of 4; the curriculum is not finished)" in text


def test_errors_are_one_line_from_the_cli(run_copy, tmp_path, capsys):
    RunPaths(run_copy).curriculum_results.unlink()
    with pytest.raises(KuavoError, match="curriculum_results.json"):
        report_main([str(run_copy)])  # the CLI's guard prints errors, not report_main
    capsys.readouterr()

    assert cli_main(["report", str(run_copy)]) == 2
    _one_error_line(capsys.readouterr().err, "curriculum_results.json not found")
    assert not (run_copy / REPORT_DIR).exists()

    assert cli_main(["report", str(tmp_path / "nonexistent")]) == 2
    _one_error_line(capsys.readouterr().err, str(tmp_path / "nonexistent"), "does not exist")


def test_broken_json_names_the_file(four_stage_run, run_copy, capsys):
    paths = RunPaths(run_copy)
    results = paths.stage(four_stage_run.stage(2).stage_dir.name).results
    saved = results.read_text()
    results.write_text("{not json")
    assert cli_main(["report", str(run_copy)]) == 2
    _one_error_line(capsys.readouterr().err, f"{results.parent.name}/{results.name} is not valid JSON")

    results.write_text(saved)
    write_json_atomically(paths.instruction_matrix, {"instructions": [1], "tasks": [1, 2], "mse": [[0.1]]})
    with pytest.raises(KuavoError, match="instruction_matrix.json: mse should have 1 rows"):
        write_report(run_copy)


def test_report_command_writes_to_out(four_stage_run, tmp_path, capsys):
    assert cli_main(["report", str(four_stage_run.root), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / REPORT_FILE).is_file()
    out = capsys.readouterr().out
    assert f"Report: {tmp_path / 'r' / REPORT_FILE}" in out and LOSS_MATRIX_PNG in out
    assert not (four_stage_run.root / REPORT_DIR).exists()  # the shared run is left as it was
