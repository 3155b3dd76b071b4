"""Results files: per-stage ``training_results.json`` and the curriculum-level loss matrix."""

from __future__ import annotations

import json
from pathlib import Path

from kuavo_train.config.schema import Config
from kuavo_train.evaluation.forgetting import curriculum_metrics
from kuavo_train.files import write_json_atomically
from kuavo_train.layout import RunPaths


def read_stage_results(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def loss_matrix(cfg: Config, run_root: Path) -> dict[int, dict[int, float]]:
    """R[stage][task id]: stage's best model evaluated on every task (also tasks not trained yet)."""
    matrix = {}
    for stage, task in enumerate(cfg.tasks, start=1):
        results = read_stage_results(RunPaths(run_root).stage(task.dirname).results)
        if results is not None:
            matrix[stage] = {int(k): float(v) for k, v in results["validation_all_tasks"].items()}
    return matrix


def write_curriculum_results(cfg: Config, run_root: Path) -> dict:
    matrix = loss_matrix(cfg, run_root)
    order = [t.id for t in cfg.tasks]
    payload = {
        "task_order": order,
        "task_names": {str(t.id): t.name for t in cfg.tasks},
        "loss_matrix": {str(s): {str(t): v for t, v in row.items()} for s, row in matrix.items()},
        "metrics": _stringify(curriculum_metrics(matrix, order)),
    }
    write_json_atomically(RunPaths(run_root).curriculum_results, payload)
    return payload


def _stringify(value):
    if isinstance(value, dict):
        return {str(k): _stringify(v) for k, v in value.items()}
    return value


def format_matrix(payload: dict) -> str:
    """The loss matrix as a text table (rows: stages, columns: tasks), with average loss and BWT."""
    order = payload["task_order"]
    names = payload["task_names"]
    header = (
        "stage \\ task "
        + "".join(f"{'t' + str(t) + ' ' + names[str(t)][:8]:>16}" for t in order)
        + f"{'avg(seen)':>11}{'BWT':>9}"
    )
    lines = ["Loss matrix R[stage][task] (validation loss of each stage's best/; lower is better):", header]
    metrics = payload["metrics"]
    for stage, row in payload["loss_matrix"].items():
        cells = "".join(f"{row.get(str(t), float('nan')):>16.4f}" for t in order)
        avg = metrics["average_loss"].get(stage)
        bwt = metrics["bwt"].get(stage)
        lines.append(
            f"{'stage ' + stage:<13}"
            + cells
            + f"{avg if avg is not None else float('nan'):>11.4f}"
            + (f"{bwt:>9.4f}" if bwt is not None else f"{'-':>9}")
        )
    return "\n".join(lines)
