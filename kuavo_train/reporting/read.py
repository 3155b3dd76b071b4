"""Everything the report shows, read from a run dir into one `RunData`; nothing here draws or writes.

Reads only files the run already wrote: ``curriculum_results.json``, each stage's ``training_results.json`` and
TensorBoard event files, and ``instruction_matrix.json`` when present. No torch model is loaded, so a run can be read
on any machine, also while later stages are still training. A file that is missing where it must exist, not JSON, or
not shaped as kuavo_train writes it is a `KuavoError` naming the file.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from kuavo_train.errors import KuavoError
from kuavo_train.layout import BEST_DIR, RunPaths, is_complete_policy_dir, stage_dirname

# tag -> (steps, values)
Scalars = dict[str, tuple[list[float], list[float]]]


@dataclass
class StageInfo:
    stage: int
    task_id: int
    name: str
    dir: Path  # absolute
    results: dict | None = None  # training_results.json as written, None before the stage finished
    scalars: Scalars | None = None  # TensorBoard scalars, None when there are none (see scalars_note)
    scalars_note: str | None = None
    has_best: bool = False  # best/ holds a complete policy

    @property
    def label(self) -> str:
        return f"task{self.task_id} {self.name}"

    @property
    def best_dir(self) -> Path:
        return self.dir / BEST_DIR


@dataclass
class RunData:
    run_root: Path  # absolute
    task_order: list[int]
    task_names: dict[int, str]
    matrix: dict[int, dict[int, float | None]]  # loss_matrix[stage][task]
    average: dict[int, float | None]
    bwt: dict[int, float | None]
    forgetting: dict[int, dict[int, float | None]]
    stages: list[StageInfo] = field(default_factory=list)
    instruction: dict | None = None  # instruction_matrix.json with int task ids and checked mse shape

    def label(self, task: int) -> str:
        return f"task{task} {self.task_names.get(task, '')}".strip()

    @property
    def done(self) -> list[StageInfo]:
        return [s for s in self.stages if s.results is not None or s.stage in self.matrix]

    @property
    def with_curves(self) -> list[StageInfo]:
        """Finished stages, plus a stage still training that already logged to TensorBoard."""
        done = self.done
        return [s for s in self.stages if s in done or s.scalars]

    def in_progress(self, info: StageInfo) -> bool:
        return info not in self.done


def finite(value) -> float | None:
    """``value`` as a finite float; None for None, booleans, NaN/inf and anything not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_run(run_root: Path) -> RunData:
    """Read the run dir ``run_root`` (its training.output_directory)."""
    run_root = Path(run_root).expanduser()
    if not run_root.is_dir():
        raise KuavoError(
            f"run directory {run_root} does not exist; pass the training.output_directory of a run (e.g. outputs/demo)"
        )
    run_root = run_root.resolve()
    paths = RunPaths(run_root)
    path = paths.curriculum_results
    if not path.is_file():
        raise KuavoError(
            f"{path} not found: the report needs the loss matrix that training writes after each "
            "stage; train at least one stage into this directory first (kuavo-train run-all)"
        )
    data = _read_json(path)
    for key in ("task_order", "loss_matrix"):
        if key not in data:
            raise KuavoError(f"{path} has no '{key}'; it was not written by kuavo_train (re-run a stage to rewrite it)")
    try:
        order = [int(t) for t in data["task_order"]]
    except (TypeError, ValueError) as exc:
        raise KuavoError(f"{path}: 'task_order' should be a list of task ids") from exc
    names = {k: str(v) for k, v in _int_keys(data.get("task_names"), path, "task_names").items()}
    matrix = {
        s: {t: finite(v) for t, v in _int_keys(row, path, f"loss_matrix.{s}").items()}
        for s, row in _int_keys(data["loss_matrix"], path, "loss_matrix").items()
    }
    metrics = data.get("metrics") or {}
    average = {s: finite(v) for s, v in _int_keys(metrics.get("average_loss"), path, "metrics.average_loss").items()}
    bwt = {s: finite(v) for s, v in _int_keys(metrics.get("bwt"), path, "metrics.bwt").items()}
    forgetting = {
        s: {t: finite(v) for t, v in _int_keys(row, path, f"metrics.forgetting.{s}").items()}
        for s, row in _int_keys(metrics.get("forgetting"), path, "metrics.forgetting").items()
    }
    run = RunData(run_root, order, names, matrix, average, bwt, forgetting)

    for stage, task in enumerate(order, start=1):
        run.stages.append(_read_stage(paths, stage, task, names.get(task, "")))

    if paths.instruction_matrix.is_file():
        run.instruction = _check_instruction(_read_json(paths.instruction_matrix), paths.instruction_matrix)
    return run


def _read_stage(paths: RunPaths, stage: int, task: int, name: str) -> StageInfo:
    stage_paths = paths.stage(stage_dirname(task, name))
    if not stage_paths.stage_dir.is_dir():  # task name unknown or renamed: the one of task's stage dirs with results
        candidates = sorted(paths.root.glob(stage_dirname(task, "*")))
        found = next((c for c in candidates if paths.stage(c.name).results.is_file()), None)
        if found is not None:
            stage_paths = paths.stage(found.name)
    stage_dir = stage_paths.stage_dir
    info = StageInfo(
        stage,
        task,
        name or stage_dir.name.split("_", 1)[-1],
        stage_dir,
        has_best=is_complete_policy_dir(stage_paths.best),
    )
    if stage_paths.results.is_file():
        info.results = _read_json(stage_paths.results)
    info.scalars, info.scalars_note = read_scalars(stage_paths.tensorboard)
    return info


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise KuavoError(f"{path} is not valid JSON ({exc}); delete it and re-run the step that writes it") from exc
    except OSError as exc:
        raise KuavoError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not isinstance(data, dict):
        raise KuavoError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _int_keys(mapping, path: Path, key: str) -> dict:
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise KuavoError(f"{path}: '{key}' should be an object keyed by number")
    try:
        return {int(k): v for k, v in mapping.items()}
    except ValueError as exc:
        raise KuavoError(f"{path}: '{key}' has a key that is not a number ({exc})") from exc


def _check_instruction(data: dict, path: Path) -> dict:
    try:
        instructions = [int(t) for t in data["instructions"]]
        tasks = [int(t) for t in data["tasks"]]
        mse = [[finite(v) for v in row] for row in data["mse"]]
    except KeyError as exc:
        raise KuavoError(
            f"{path} has no {exc}; expected keys instructions, tasks, mse "
            "(re-create it with kuavo-train evaluate <checkpoint>)"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise KuavoError(f"{path}: instructions/tasks should be task ids and mse a list of rows of numbers") from exc
    if len(mse) != len(instructions) or any(len(row) != len(tasks) for row in mse):
        raise KuavoError(
            f"{path}: mse should have {len(instructions)} rows (one per instruction) of {len(tasks)} "
            "values (one per task)"
        )
    return {**data, "instructions": instructions, "tasks": tasks, "mse": mse}


def read_scalars(tb_dir: Path) -> tuple[Scalars | None, str | None]:
    """All scalar series of a stage's TensorBoard directory: tag -> (steps, values), last value per step wins."""
    if not tb_dir.is_dir() or not any(p.name.startswith("events.out.tfevents") for p in tb_dir.iterdir()):
        return None, f"no TensorBoard events in {tb_dir}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            accumulator = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
            accumulator.Reload()
            series = {}
            for tag in accumulator.Tags().get("scalars", []):
                by_step = {}
                for event in accumulator.Scalars(tag):
                    by_step[float(event.step)] = float(event.value)
                steps = sorted(by_step)
                series[tag] = (steps, [by_step[s] for s in steps])
    except ImportError:
        return None, "tensorboard is not installed"
    except Exception as exc:  # a damaged event file must not stop the report
        return None, f"could not read {tb_dir}: {exc}"
    return (series, None) if series else (None, f"no scalars in {tb_dir}")
