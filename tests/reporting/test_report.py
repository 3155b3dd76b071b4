"""`kuavo-train report`: a hand-written run directory in, report.md and readable PNGs out."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from kuavo_train.errors import KuavoError
from kuavo_train.reporting import plots
from kuavo_train.reporting.report import report_main, write_report

NAMES = {1: "moving_grasp", 2: "weighing", 3: "placement"}
# stage 1 trained task 1, stage 2 trained task 2; stage 3 (task 3) not run yet
MATRIX = {1: {1: 0.6123, 2: 5.2576, 3: 1.3527}, 2: {1: 0.8995, 2: 0.4507, 3: 0.9759}}
STEPS = {1: 40, 2: 30}


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _stage_results(stage: int, task: int) -> dict:
    seen = list(range(1, stage + 1))
    history = [{"epoch": e, "step": e * STEPS[stage] // 2,
                "losses": {str(t): MATRIX[stage][t] * (1.5 if e == 1 else 1.0) for t in seen}} for e in (1, 2)]
    criteria = [{"task_id": task, "role": "current", "loss": MATRIX[stage][task], "limit": 0.5,
                 "passed": MATRIX[stage][task] < 0.5}]
    forgetting = []
    for t in seen[:-1]:
        criteria.append({"task_id": t, "role": "earlier", "loss": MATRIX[stage][t], "limit": 0.7,
                         "passed": MATRIX[stage][t] < 0.7})
        forgetting.append({"task_id": t, "loss": MATRIX[stage][t], "reference": MATRIX[t][t],
                           "verdict": "❌ Forgotten"})
    return {
        "task_id": task, "task_name": NAMES[task], "stage": stage, "best_loss": MATRIX[stage][task], "best_epoch": 2,
        "final_validation": {str(t): MATRIX[stage][t] for t in seen},
        "validation_all_tasks": {str(t): v for t, v in MATRIX[stage].items()},
        "training_epochs": 2, "learning_rate": 1e-3 / stage, "optimizer_steps": STEPS[stage],
        "replay_mix": {f"task{t}": (1.0 if stage == 1 else (0.8 if t == task else 0.2)) for t in seen},
        "criteria": criteria, "forgetting": forgetting, "validation_history": history,
        "train_loss_per_epoch": [1.6, 0.55], "timings_s": {"training": 75.5, "validation": 4.25, "checkpointing": 0.2},
    }


def _tensorboard(stage_dir: Path, stage: int, steps: int, validation: bool = True) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(stage_dir / "tensorboard"))
    for step in range(1, steps + 1):
        writer.add_scalar("train/loss", 2.0 / (1 + 0.1 * step), step)
        writer.add_scalar("train/lr", 1e-3 * min(1.0, step / 5), step)
    if validation:
        for entry in _stage_results(stage, stage)["validation_history"]:
            for task, loss in entry["losses"].items():
                writer.add_scalar(f"validation/task{task}_loss", loss, entry["step"])
    writer.close()


@pytest.fixture
def run_root(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    _write_json(root / "curriculum_results.json", {
        "task_order": [1, 2, 3],
        "task_names": {str(t): n for t, n in NAMES.items()},
        "loss_matrix": {str(s): {str(t): v for t, v in row.items()} for s, row in MATRIX.items()},
        "metrics": {"average_loss": {"1": 0.6123, "2": 0.6751}, "bwt": {"1": None, "2": 0.2872},
                    "forgetting": {"1": {}, "2": {"1": 0.2872}}},
    })
    for stage in (1, 2):
        stage_dir = root / f"task{stage}_{NAMES[stage]}"
        _write_json(stage_dir / "training_results.json", _stage_results(stage, stage))
        (stage_dir / "best").mkdir()
    _tensorboard(root / "task1_moving_grasp", 1, STEPS[1])  # stage 2 has no events: its curves come from the JSON
    return root


def _check_png(path: Path, figsize: tuple[float, float]) -> None:
    assert path.is_file(), path
    assert path.stat().st_size > 5_000, f"{path.name} is only {path.stat().st_size} bytes"
    image = mpimg.imread(path)
    assert image.shape[:2] == plots.figure_pixels(figsize), path.name
    assert image[..., :3].std() > 0.05, f"{path.name} looks blank"


def test_report_has_tables_and_pictures(run_root: Path):
    report = write_report(run_root)

    out = run_root / "report"
    assert report == out / "report.md"
    _check_png(out / "loss_matrix.png", plots.loss_matrix_figsize(3, 3))
    _check_png(out / "curves_stage1.png", plots.curves_stage_figsize())
    _check_png(out / "curves_stage2.png", plots.curves_stage_figsize())
    _check_png(out / "curves_all.png", plots.curves_all_figsize(2))
    assert not (out / "curves_stage3.png").exists()
    assert not (out / "instruction_matrix.png").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".report-tmp")]

    text = report.read_text()
    assert "Stages done: **2 of 3**" in text
    assert str((run_root / "task2_weighing" / "best").resolve()) in text
    for row in MATRIX.values():
        for value in row.values():
            assert f"{value:.4f}" in text
    assert "**0.4507**" in text and "*5.2576*" in text  # trained-in-stage bold, not-yet-trained italic
    assert "+0.2872" in text  # BWT after stage 2
    assert "| 3 (task3 placement) | not run |" in text
    assert "### Stage 1: task1 moving_grasp — ❌ failed" in text
    assert "### Stage 2: task2 weighing — ❌ failed" in text
    assert "| task2 weighing | current | 0.4507 | 0.500 | ✅ pass |" in text
    assert "| task1 moving_grasp | earlier | 0.8995 | 0.700 | ❌ fail |" in text
    assert "| 2 | task1 moving_grasp | 0.8995 | 0.6123 | x1.47 | ❌ Forgotten | +0.2872 |" in text
    assert "1 min 15 s" in text  # training time of one stage
    assert "kuavo-train evaluate" in text
    for name in ("loss_matrix.png", "curves_all.png", "curves_stage1.png", "curves_stage2.png"):
        assert f"]({name})" in text


def test_instruction_matrix_is_drawn_and_stale_pictures_removed(run_root: Path, tmp_path: Path):
    _write_json(run_root / "instruction_matrix.json", {
        "instructions": [1, 2], "tasks": [1, 2, 3], "mse": [[0.21, 0.9, 1.4], [0.8, 0.33, None]], "margin": 0.42})
    out = tmp_path / "elsewhere"
    (out / "curves_stage7.png").parent.mkdir(parents=True)
    (out / "curves_stage7.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")

    text = write_report(run_root, out).read_text()

    _check_png(out / "instruction_matrix.png", plots.instruction_matrix_figsize(2, 3))
    assert "![instruction matrix](instruction_matrix.png)" in text
    assert "**0.2100**" in text and "0.4200" in text
    assert not (out / "curves_stage7.png").exists()  # an older report's picture
    assert (out / "notes.txt").read_text() == "mine"  # not ours: left alone

    (run_root / "instruction_matrix.json").unlink()
    text = write_report(run_root, out).read_text()
    assert not (out / "instruction_matrix.png").exists()
    assert "kuavo-train evaluate" in text


def test_stage_still_training_gets_its_curves(run_root: Path):
    _tensorboard(run_root / "task3_placement", 3, steps=12, validation=False)  # no training_results.json yet

    text = write_report(run_root).read_text()

    _check_png(run_root / "report" / "curves_stage3.png", plots.curves_stage_figsize())
    assert "### Stage 3: task3 placement (in progress)" in text
    assert "| 3 | task3 placement | in progress |" in text
    assert "Stages done: **2 of 3**" in text


def test_missing_curriculum_results_names_the_file(tmp_path: Path, capsys):
    with pytest.raises(KuavoError, match="curriculum_results.json"):
        write_report(tmp_path)
    assert report_main([str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "report").exists()
    assert report_main([str(tmp_path / "nope")]) == 2


def test_broken_json_names_the_file(run_root: Path):
    (run_root / "task2_weighing" / "training_results.json").write_text("{not json")
    with pytest.raises(KuavoError, match="task2_weighing/training_results.json"):
        write_report(run_root)
    _write_json(run_root / "task2_weighing" / "training_results.json", _stage_results(2, 2))
    _write_json(run_root / "instruction_matrix.json", {"instructions": [1], "tasks": [1, 2], "mse": [[0.1]]})
    with pytest.raises(KuavoError, match="instruction_matrix.json"):
        write_report(run_root)


def test_report_main_writes_to_out(run_root: Path, tmp_path: Path, capsys):
    assert report_main([str(run_root), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "report.md").is_file()
    assert "report.md" in capsys.readouterr().out
