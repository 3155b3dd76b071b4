"""`kuavo-train report <output_dir>`: a Markdown report with pictures of one curriculum run.

Reads only files the run already wrote: ``curriculum_results.json``, each stage's ``training_results.json`` and
TensorBoard event files, and ``instruction_matrix.json`` when present. No torch model is loaded, so the report can
be made on any machine, also while later stages are still training. See docs/report.md for how to read it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kuavo_train.errors import KuavoError

CURRICULUM_RESULTS_FILE = "curriculum_results.json"
STAGE_RESULTS_FILE = "training_results.json"
INSTRUCTION_MATRIX_FILE = "instruction_matrix.json"
REPORT_DIRNAME = "report"
REPORT_FILE = "report.md"
LOSS_MATRIX_PNG = "loss_matrix.png"
CURVES_ALL_PNG = "curves_all.png"
INSTRUCTION_MATRIX_PNG = "instruction_matrix.png"


def curves_stage_png(stage: int) -> str:
    return f"curves_stage{stage}.png"


@dataclass
class StageInfo:
    stage: int
    task_id: int
    name: str
    dir: Path
    results: dict | None = None
    scalars: dict[str, tuple[list[float], list[float]]] | None = None
    scalars_note: str | None = None

    @property
    def label(self) -> str:
        return f"task{self.task_id} {self.name}"

    @property
    def best_dir(self) -> Path:
        return self.dir / "best"


@dataclass
class RunData:
    run_root: Path
    task_order: list[int]
    task_names: dict[int, str]
    matrix: dict[int, dict[int, float | None]]
    average: dict[int, float | None]
    bwt: dict[int, float | None]
    forgetting: dict[int, dict[int, float | None]]
    stages: list[StageInfo] = field(default_factory=list)
    instruction: dict | None = None

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


# ----------------------------------------------------------------------------------------------------- reading


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


def _num(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int_keys(mapping, path: Path, key: str) -> dict:
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise KuavoError(f"{path}: '{key}' should be an object keyed by number")
    try:
        return {int(k): v for k, v in mapping.items()}
    except ValueError as exc:
        raise KuavoError(f"{path}: '{key}' has a key that is not a number ({exc})") from exc


def load_run(run_root: Path) -> RunData:
    run_root = Path(run_root).expanduser()
    if not run_root.is_dir():
        raise KuavoError(f"run directory {run_root} does not exist; pass the training.output_directory of a run "
                         "(e.g. outputs/demo)")
    path = run_root / CURRICULUM_RESULTS_FILE
    if not path.is_file():
        raise KuavoError(f"{path} not found: the report needs the loss matrix that training writes after each "
                         "stage; train at least one stage into this directory first (kuavo-train run-all)")
    data = _read_json(path)
    for key in ("task_order", "loss_matrix"):
        if key not in data:
            raise KuavoError(f"{path} has no '{key}'; it was not written by kuavo_train (re-run a stage to rewrite it)")
    try:
        order = [int(t) for t in data["task_order"]]
    except (TypeError, ValueError) as exc:
        raise KuavoError(f"{path}: 'task_order' should be a list of task ids") from exc
    names = {k: str(v) for k, v in _int_keys(data.get("task_names"), path, "task_names").items()}
    matrix = {s: {t: _num(v) for t, v in _int_keys(row, path, f"loss_matrix.{s}").items()}
              for s, row in _int_keys(data["loss_matrix"], path, "loss_matrix").items()}
    metrics = data.get("metrics") or {}
    average = {s: _num(v) for s, v in _int_keys(metrics.get("average_loss"), path, "metrics.average_loss").items()}
    bwt = {s: _num(v) for s, v in _int_keys(metrics.get("bwt"), path, "metrics.bwt").items()}
    forgetting = {s: {t: _num(v) for t, v in _int_keys(row, path, f"metrics.forgetting.{s}").items()}
                  for s, row in _int_keys(metrics.get("forgetting"), path, "metrics.forgetting").items()}
    run = RunData(run_root, order, names, matrix, average, bwt, forgetting)

    for stage, task in enumerate(order, start=1):
        name = names.get(task, "")
        stage_dir = run_root / f"task{task}_{name}"
        if not stage_dir.is_dir():
            candidates = sorted(run_root.glob(f"task{task}_*"))
            stage_dir = next((c for c in candidates if (c / STAGE_RESULTS_FILE).is_file()), stage_dir)
        info = StageInfo(stage, task, name or stage_dir.name.split("_", 1)[-1], stage_dir)
        results_path = stage_dir / STAGE_RESULTS_FILE
        if results_path.is_file():
            info.results = _read_json(results_path)
        info.scalars, info.scalars_note = read_scalars(stage_dir / "tensorboard")
        run.stages.append(info)

    instruction_path = run_root / INSTRUCTION_MATRIX_FILE
    if instruction_path.is_file():
        run.instruction = _check_instruction(_read_json(instruction_path), instruction_path)
    return run


def _check_instruction(data: dict, path: Path) -> dict:
    try:
        instructions = [int(t) for t in data["instructions"]]
        tasks = [int(t) for t in data["tasks"]]
        mse = [[_num(v) for v in row] for row in data["mse"]]
    except KeyError as exc:
        raise KuavoError(f"{path} has no {exc}; expected keys instructions, tasks, mse "
                         "(re-create it with kuavo-train evaluate <checkpoint>)") from exc
    except (TypeError, ValueError) as exc:
        raise KuavoError(f"{path}: instructions/tasks should be task ids and mse a list of rows of numbers") from exc
    if len(mse) != len(instructions) or any(len(row) != len(tasks) for row in mse):
        raise KuavoError(f"{path}: mse should have {len(instructions)} rows (one per instruction) of {len(tasks)} "
                         "values (one per task)")
    return {**data, "instructions": instructions, "tasks": tasks, "mse": mse}


def read_scalars(tb_dir: Path) -> tuple[dict[str, tuple[list[float], list[float]]] | None, str | None]:
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


# ------------------------------------------------------------------------------------------------------ curves


def stage_curves(run: RunData, info: StageInfo):
    from kuavo_train.reporting.plots import StageCurves

    results = info.results or {}
    curves = StageCurves(stage=info.stage, task_id=info.task_id, title=_stage_title(run, info))
    history = [h for h in results.get("validation_history") or [] if isinstance(h, dict)]
    epoch_step = {h.get("epoch"): _num(h.get("step")) for h in history}
    if info.scalars:
        steps, values = info.scalars.get("train/loss", ([], []))
        curves.train_steps, curves.train_loss = list(steps), list(values)
        curves.lr_steps, curves.lr = map(list, info.scalars.get("train/lr", ([], [])))
        for tag, (steps, values) in info.scalars.items():
            if tag.startswith("validation/task") and tag.endswith("_loss"):
                try:
                    task = int(tag[len("validation/task"):-len("_loss")])
                except ValueError:
                    continue
                curves.validation[task] = (list(steps), list(values))
    else:
        curves.source = "json"
        per_epoch = results.get("train_loss_per_epoch") or []
        total = _num(results.get("optimizer_steps"))
        epochs = len(per_epoch)
        for epoch, loss in enumerate(per_epoch, start=1):
            step = epoch_step.get(epoch) or (total * epoch / epochs if total else float(epoch))
            curves.train_steps.append(step)
            curves.train_loss.append(_num(loss))
        for entry in history:
            step = _num(entry.get("step"))
            for task, loss in (entry.get("losses") or {}).items():
                steps, values = curves.validation.setdefault(int(task), ([], []))
                steps.append(step if step is not None else float(entry.get("epoch", len(steps) + 1)))
                values.append(_num(loss))
    curves.best_step = epoch_step.get(results.get("best_epoch"))
    curves.total_steps = _num(results.get("optimizer_steps")) or max(
        [*curves.train_steps, *[s for steps, _ in curves.validation.values() for s in steps], 0.0]) or None
    return curves


def _stage_title(run: RunData, info: StageInfo) -> str:
    results = info.results or {}
    parts = [f"Stage {info.stage}: {info.label}" + (" (in progress)" if run.in_progress(info) else "")]
    lr = _num(results.get("learning_rate"))
    if lr is not None:
        parts.append(f"lr {lr:g}")
    mix = results.get("replay_mix")
    if isinstance(mix, dict) and len(mix) > 1:
        parts.append("replay " + ", ".join(f"{k} {_num(v) or 0:.0%}" for k, v in mix.items()))
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------------- markdown


def _f(value, digits: int = 4) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:.{digits}f}"


def _signed(value, digits: int = 4) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:+.{digits}f}"


def _duration(seconds) -> str:
    s = _num(seconds)
    if s is None:
        return "—"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["l"] + ["r"] * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---:" if a == "c" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _final_model(run: RunData) -> tuple[str, StageInfo | None]:
    complete = [s for s in run.done if s.best_dir.is_dir()]
    if not complete:
        return "no stage has a best/ checkpoint yet", None
    last = complete[-1]
    if last.stage == len(run.stages):
        return f"`{last.best_dir.resolve()}` (final multi-task model, stage {last.stage} of {len(run.stages)})", last
    return (f"`{last.best_dir.resolve()}` (latest model: stage {last.stage} of {len(run.stages)}; "
            "the curriculum is not finished)"), last


def _criteria_passed(info: StageInfo) -> bool | None:
    criteria = (info.results or {}).get("criteria")
    if not criteria:
        return None
    return all(bool(c.get("passed")) for c in criteria)


def build_markdown(run: RunData, images: dict[str, str]) -> str:
    n = len(run.stages)
    done = run.done
    lines = [f"# Training report: `{run.run_root.resolve()}`", "",
             f"Generated {datetime.now().strftime('%Y-%m-%d %H:%M')} by `kuavo-train report` from "
             f"`{CURRICULUM_RESULTS_FILE}`, each stage's `{STAGE_RESULTS_FILE}` and TensorBoard events. "
             "How to read it: docs/report.md.", ""]

    # summary
    final_text, final = _final_model(run)
    last_stage = max(run.matrix) if run.matrix else None
    criteria_states = [(s, _criteria_passed(s)) for s in done]
    failed = [s for s, ok in criteria_states if ok is False]
    total_time = sum(_num(v) or 0.0 for s in done for v in ((s.results or {}).get("timings_s") or {}).values())
    lines += ["## Summary", "",
              f"- Stages done: **{len(done)} of {n}**"
              + (" — " + ", ".join(f"stage {s.stage} {s.label}" for s in done) if done else ""),
              f"- Model: {final_text}"]
    if last_stage is not None:
        lines.append(f"- After stage {last_stage}: average loss over trained tasks "
                     f"**{_f(run.average.get(last_stage))}**,"
                     f" BWT **{_signed(run.bwt.get(last_stage))}** (positive = earlier tasks got worse)")
    if criteria_states:
        passed = sum(1 for _, ok in criteria_states if ok)
        lines.append(f"- Success criteria: {passed} of {len(criteria_states)} stages passed all their criteria"
                     + (" — failed: " + ", ".join(f"stage {s.stage}" for s in failed) if failed else ""))
    if total_time:
        lines.append(f"- Time spent (training + validation + checkpointing): {_duration(total_time)}")
    missing = [s for s in done if s.results is None]
    if missing:
        lines.append("- Missing stage results: " + ", ".join(f"`{s.dir / STAGE_RESULTS_FILE}`" for s in missing))
    running = [s for s in run.with_curves if run.in_progress(s)]
    if running:
        lines.append("- In progress (TensorBoard events but no results yet): "
                     + ", ".join(f"stage {s.stage} {s.label}" for s in running))
    if len(done) < n:
        lines.append("- Still to train: " + ", ".join(f"stage {s.stage} {s.label}" for s in run.stages
                                                      if s not in done))
    lines.append("")

    # stage overview
    overview = []
    for s in run.stages:
        r = s.results or {}
        mix = r.get("replay_mix")
        overview.append([
            f"{s.stage}", s.label,
            "done" if s in done else ("in progress" if s.scalars else "not run"),
            str(r.get("training_epochs", "—")), str(r.get("optimizer_steps", "—")),
            f"{_num(r.get('learning_rate')):g}" if _num(r.get("learning_rate")) is not None else "—",
            ", ".join(f"{k} {_num(v) or 0:.2f}" for k, v in mix.items()) if isinstance(mix, dict) else "—",
            f"{_f(r.get('best_loss'))} (epoch {r.get('best_epoch')})" if r.get("best_loss") is not None else "—",
        ])
    lines += ["### Stages", ""]
    lines += _table(["stage", "task", "status", "epochs", "steps", "lr", "replay mix", "best loss (epoch)"], overview,
                    ["r", "l", "l", "r", "r", "r", "l", "r"])
    lines.append("")

    # loss matrix
    lines += ["## Loss matrix", "",
              "R[stage][task]: validation loss on each task of the `best/` model of each stage (lower is better). "
              "**Bold** = the task trained in that stage; *italic* = task not trained yet (zero-shot loss, "
              "not counted in the average or BWT). avg = mean over trained tasks; BWT = mean change of earlier "
              "tasks' loss since their own stage (positive = forgetting).", ""]
    if LOSS_MATRIX_PNG in images:
        lines += [f"![loss matrix]({LOSS_MATRIX_PNG})", ""]
    header = ["stage (trained task)"] + [run.label(t) for t in run.task_order] + ["avg", "BWT"]
    rows = []
    for s in run.stages:
        row = run.matrix.get(s.stage)
        if row is None:
            rows.append([f"{s.stage} ({s.label})"] + ["not run"] * len(run.task_order) + ["—", "—"])
            continue
        cells = []
        for j, task in enumerate(run.task_order):
            value = _f(row.get(task))
            if j + 1 == s.stage and value != "—":
                value = f"**{value}**"
            elif j + 1 > s.stage and value != "—":
                value = f"*{value}*"
            cells.append(value)
        rows.append([f"{s.stage} ({s.label})"] + cells + [_f(run.average.get(s.stage)), _signed(run.bwt.get(s.stage))])
    lines += _table(header, rows)
    lines.append("")

    # success criteria
    lines += ["## Success criteria", "",
              "Each stage's final (best/) model: the task just trained must be below the current-task limit, "
              "earlier tasks below that stage's limit for earlier tasks.", ""]
    for s in done:
        criteria = (s.results or {}).get("criteria") or []
        ok = _criteria_passed(s)
        verdict = "no criteria recorded" if ok is None else ("✅ all passed" if ok else "❌ failed")
        lines += [f"### Stage {s.stage}: {s.label} — {verdict}", ""]
        if criteria:
            lines += _table(["task", "role", "loss", "limit", "result"],
                            [[run.label(int(c.get("task_id", 0))), str(c.get("role", "")), _f(c.get("loss")),
                              _f(c.get("limit"), 3), "✅ pass" if c.get("passed") else "❌ fail"] for c in criteria],
                            ["l", "l", "r", "r", "l"])
            lines.append("")

    # forgetting
    lines += ["## Forgetting", "",
              "For every earlier task after each stage: its loss now, its loss at the end of its own stage "
              "(reference), the ratio, the verdict, and the change against its best loss so far "
              "(positive = forgotten that much).", ""]
    rows = []
    for s in done:
        for entry in (s.results or {}).get("forgetting") or []:
            task = int(entry.get("task_id", 0))
            loss, reference = _num(entry.get("loss")), _num(entry.get("reference"))
            ratio = f"x{loss / reference:.2f}" if loss is not None and reference else "—"
            rows.append([f"{s.stage}", run.label(task), _f(loss), _f(reference), ratio,
                         str(entry.get("verdict", "—")), _signed(run.forgetting.get(s.stage, {}).get(task))])
    if rows:
        lines += _table(["after stage", "earlier task", "loss", "own-stage loss", "ratio", "verdict",
                         "vs best so far"], rows, ["r", "l", "r", "r", "r", "l", "r"])
    else:
        lines.append("No earlier tasks to check yet (forgetting starts with stage 2).")
    lines.append("")

    # curves
    lines += ["## Training curves", "",
              "Per stage: train loss per optimizer step (grey raw, black smoothed), validation loss of every "
              "evaluated task at each validation (thick = task trained in that stage), learning rate below.", ""]
    if CURVES_ALL_PNG in images:
        lines += [f"![validation across the curriculum]({CURVES_ALL_PNG})", ""]
    for s in run.with_curves:
        name = curves_stage_png(s.stage)
        if name in images:
            state = " (in progress)" if run.in_progress(s) else ""
            lines += [f"### Stage {s.stage}: {s.label}{state}", "", f"![stage {s.stage} curves]({name})", ""]
            if s.scalars is None:
                lines += [f"(no TensorBoard curves: {s.scalars_note}; drawn from {STAGE_RESULTS_FILE} per epoch)", ""]

    # timings
    lines += ["## Timings", ""]
    rows, totals = [], {"training": 0.0, "validation": 0.0, "checkpointing": 0.0}
    for s in done:
        timings = (s.results or {}).get("timings_s") or {}
        steps = _num((s.results or {}).get("optimizer_steps"))
        train = _num(timings.get("training"))
        total = sum(_num(v) or 0.0 for v in timings.values())
        for key in totals:
            totals[key] += _num(timings.get(key)) or 0.0
        rows.append([f"{s.stage} ({s.label})", _duration(timings.get("training")), _duration(timings.get("validation")),
                     _duration(timings.get("checkpointing")), _duration(total),
                     f"{train / steps:.3f}" if train and steps else "—"])
    if rows:
        rows.append(["**total**", *(f"**{_duration(v)}**" for v in totals.values()),
                     f"**{_duration(sum(totals.values()))}**", ""])
        lines += _table(["stage", "training", "validation", "checkpointing", "total", "s / step"], rows)
    else:
        lines.append("No stage finished yet.")
    lines.append("")

    # instruction matrix
    lines += ["## Instruction following", ""]
    if run.instruction is not None:
        ins = run.instruction
        margin = ins.get("margin")
        lines += [f"From `{INSTRUCTION_MATRIX_FILE}`: action MSE of the model given each task's instruction (rows) "
                  "on each task's data (columns). A model that follows the instruction has its lowest value of each "
                  "column on the diagonal."
                  + (f" Margin: **{_f(margin)}**." if _num(margin) is not None else
                     (f" Margin: `{json.dumps(margin)}`." if margin is not None else "")), ""]
        if INSTRUCTION_MATRIX_PNG in images:
            lines += [f"![instruction matrix]({INSTRUCTION_MATRIX_PNG})", ""]
        lines += _table(["instruction \\ task"] + [run.label(t) for t in ins["tasks"]],
                        [[run.label(i)] + [(f"**{_f(v)}**" if i == t else _f(v)) for t, v in zip(ins["tasks"], row)]
                         for i, row in zip(ins["instructions"], ins["mse"])])
        lines.append("")
    else:
        checkpoint = final.best_dir.resolve() if final is not None else run.run_root.resolve() / "<stage>" / "best"
        lines += [f"Not evaluated yet (`{INSTRUCTION_MATRIX_FILE}` not found). To measure whether the model follows "
                  "the language instruction, run", "", "```bash", f"kuavo-train evaluate {checkpoint}", "```", "",
                  f"which writes `{run.run_root.resolve() / INSTRUCTION_MATRIX_FILE}`; then run `kuavo-train report "
                  f"{run.run_root.resolve()}` again.", ""]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------------ output


def _draw(run: RunData, tmp: Path) -> dict[str, str]:
    from kuavo_train.reporting import plots

    colors = plots.task_colors(run.task_order)
    labels = {t: run.label(t) for t in run.task_order}
    images = {}
    plots.plot_loss_matrix(tmp / LOSS_MATRIX_PNG, run.task_order, labels, run.matrix, run.average, run.bwt)
    images[LOSS_MATRIX_PNG] = LOSS_MATRIX_PNG
    all_curves = []
    for info in run.with_curves:
        curves = stage_curves(run, info)
        all_curves.append(curves)
        name = curves_stage_png(info.stage)
        plots.plot_stage_curves(tmp / name, curves, labels, colors)
        images[name] = name
    if all_curves:
        plots.plot_curves_all(tmp / CURVES_ALL_PNG, all_curves, run.task_order, labels, colors)
        images[CURVES_ALL_PNG] = CURVES_ALL_PNG
    if run.instruction is not None:
        ins = run.instruction
        plots.plot_instruction_matrix(tmp / INSTRUCTION_MATRIX_PNG, ins["instructions"], ins["tasks"], ins["mse"],
                                      labels, ins.get("margin"))
        images[INSTRUCTION_MATRIX_PNG] = INSTRUCTION_MATRIX_PNG
    return images


def _is_ours(name: str) -> bool:
    return name in (REPORT_FILE, LOSS_MATRIX_PNG, CURVES_ALL_PNG, INSTRUCTION_MATRIX_PNG) or (
        name.startswith("curves_stage") and name.endswith(".png") and name[len("curves_stage"):-4].isdigit())


def write_report(run_root: Path, out_dir: Path | None = None) -> Path:
    """Write ``report.md`` and its PNGs to ``out_dir`` (default ``<run_root>/report``); returns report.md's path.

    Everything is drawn into a temporary directory first; each file then replaces the old one atomically
    (pictures first, report.md last), and pictures of an older report that no longer apply are removed.
    """
    run_root = Path(run_root).expanduser()
    run = load_run(run_root)
    out_dir = Path(out_dir).expanduser() if out_dir is not None else run_root / REPORT_DIRNAME
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KuavoError(f"cannot create report directory {out_dir}: {exc.strerror or exc}") from exc
    tmp = Path(tempfile.mkdtemp(prefix=".report-tmp-", dir=out_dir))
    try:
        images = _draw(run, tmp)
        (tmp / REPORT_FILE).write_text(build_markdown(run, images), encoding="utf-8")
        written = [*images, REPORT_FILE]
        for name in written:
            os.replace(tmp / name, out_dir / name)
        for stale in out_dir.iterdir():
            if stale.is_file() and _is_ours(stale.name) and stale.name not in written:
                stale.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / REPORT_FILE


def report_main(argv: list[str] | None = None) -> int:
    from kuavo_train.curriculum.recorded import run_root_of

    parser = argparse.ArgumentParser(
        prog="kuavo-train report",
        description="Write a Markdown report with pictures (loss matrix, curves, criteria, forgetting, timings) "
                    "for a curriculum run.")
    parser.add_argument("output_dir", type=Path,
                        help="the run's training.output_directory (e.g. outputs/demo), or a stage or checkpoint dir in it")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default OUTPUT_DIR/report)")
    args = parser.parse_args(argv)
    try:
        path = write_report(run_root_of(args.output_dir), args.out)
    except KuavoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Report: {path}")
    print("Pictures: " + ", ".join(sorted(p.name for p in path.parent.glob("*.png") if _is_ours(p.name))))
    return 0


if __name__ == "__main__":
    raise SystemExit(report_main())
