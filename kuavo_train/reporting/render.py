"""The report of a run from its `RunData` (kuavo_train.reporting.read): Markdown text and pictures.

Nothing here reads the run dir: every number, path and state shown comes from the `RunData`, so a report can be
rendered from data read earlier, elsewhere, or made by hand. How to read the report: docs/report.md.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from kuavo_train.layout import (
    BEST_DIR,
    CURRICULUM_RESULTS_FILE,
    CURVES_ALL_PNG,
    INSTRUCTION_MATRIX_FILE,
    INSTRUCTION_MATRIX_PNG,
    LOSS_MATRIX_PNG,
    REPORT_FILE,
    STAGE_RESULTS_FILE,
    curves_stage_png,
    stage_of_curves_png,
)
from kuavo_train.reporting.read import RunData, StageInfo, finite

# ------------------------------------------------------------------------------------------------------ curves


# Parts of a stage's wall time in training_results.json `timings_s` (older runs have the middle three only).
TIMING_PARTS = ("data_preparation", "model_build", "training", "validation", "final_evaluation", "checkpointing")


def stage_seconds(timings: dict) -> float:
    """A stage's wall time: its recorded total, or the sum of its parts for runs that did not record one."""
    if finite(timings.get("total")) is not None:
        return float(timings["total"])
    return sum(finite(v) or 0.0 for v in timings.values())


def stage_curves(run: RunData, info: StageInfo):
    from kuavo_train.reporting.plots import StageCurves

    results = info.results or {}
    curves = StageCurves(stage=info.stage, task_id=info.task_id, title=_stage_title(run, info))
    history = [h for h in results.get("validation_history") or [] if isinstance(h, dict)]
    epoch_step = {h.get("epoch"): finite(h.get("step")) for h in history}
    if info.scalars:
        steps, values = info.scalars.get("train/loss", ([], []))
        curves.train_steps, curves.train_loss = list(steps), list(values)
        curves.lr_steps, curves.lr = map(list, info.scalars.get("train/lr", ([], [])))
        for tag, (steps, values) in info.scalars.items():
            if tag.startswith("validation/task") and tag.endswith("_loss"):
                try:
                    task = int(tag[len("validation/task") : -len("_loss")])
                except ValueError:
                    continue
                curves.validation[task] = (list(steps), list(values))
    else:
        curves.source = "json"
        per_epoch = results.get("train_loss_per_epoch") or []
        total = finite(results.get("optimizer_steps"))
        epochs = len(per_epoch)
        for epoch, loss in enumerate(per_epoch, start=1):
            step = epoch_step.get(epoch) or (total * epoch / epochs if total else float(epoch))
            curves.train_steps.append(step)
            curves.train_loss.append(finite(loss))
        for entry in history:
            step = finite(entry.get("step"))
            for task, loss in (entry.get("losses") or {}).items():
                steps, values = curves.validation.setdefault(int(task), ([], []))
                steps.append(step if step is not None else float(entry.get("epoch", len(steps) + 1)))
                values.append(finite(loss))
    curves.best_step = epoch_step.get(results.get("best_epoch"))
    curves.total_steps = (
        finite(results.get("optimizer_steps"))
        or max([*curves.train_steps, *[s for steps, _ in curves.validation.values() for s in steps], 0.0])
        or None
    )
    return curves


def _stage_title(run: RunData, info: StageInfo) -> str:
    results = info.results or {}
    parts = [f"Stage {info.stage}: {info.label}" + (" (in progress)" if run.in_progress(info) else "")]
    lr = finite(results.get("learning_rate"))
    if lr is not None:
        parts.append(f"lr {lr:g}")
    mix = results.get("replay_mix")
    if isinstance(mix, dict) and len(mix) > 1:
        parts.append("replay " + ", ".join(f"{k} {finite(v) or 0:.0%}" for k, v in mix.items()))
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------------- markdown


def _f(value, digits: int = 4) -> str:
    number = finite(value)
    return "—" if number is None else f"{number:.{digits}f}"


def _signed(value, digits: int = 4) -> str:
    number = finite(value)
    return "—" if number is None else f"{number:+.{digits}f}"


def _duration(seconds) -> str:
    s = finite(seconds)
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
    complete = [s for s in run.done if s.has_best]
    if not complete:
        return "no stage has a best/ checkpoint yet", None
    last = complete[-1]
    if last.stage == len(run.stages):
        return f"`{last.best_dir}` (final multi-task model, stage {last.stage} of {len(run.stages)})", last
    return (
        f"`{last.best_dir}` (latest model: stage {last.stage} of {len(run.stages)}; the curriculum is not finished)"
    ), last


def _criteria_passed(info: StageInfo) -> bool | None:
    criteria = (info.results or {}).get("criteria")
    if not criteria:
        return None
    return all(bool(c.get("passed")) for c in criteria)


def build_markdown(run: RunData, images: dict[str, str]) -> str:
    n = len(run.stages)
    done = run.done
    lines = [
        f"# Training report: `{run.run_root}`",
        "",
        f"Generated {datetime.now().strftime('%Y-%m-%d %H:%M')} by `kuavo-train report` from "
        f"`{CURRICULUM_RESULTS_FILE}`, each stage's `{STAGE_RESULTS_FILE}` and TensorBoard events. "
        "How to read it: docs/report.md.",
        "",
    ]

    # summary
    final_text, final = _final_model(run)
    last_stage = max(run.matrix) if run.matrix else None
    criteria_states = [(s, _criteria_passed(s)) for s in done]
    failed = [s for s, ok in criteria_states if ok is False]
    total_time = sum(stage_seconds((s.results or {}).get("timings_s") or {}) for s in done)
    lines += [
        "## Summary",
        "",
        f"- Stages done: **{len(done)} of {n}**"
        + (" — " + ", ".join(f"stage {s.stage} {s.label}" for s in done) if done else ""),
        f"- Model: {final_text}",
    ]
    if last_stage is not None:
        lines.append(
            f"- After stage {last_stage}: average loss over trained tasks "
            f"**{_f(run.average.get(last_stage))}**,"
            f" BWT **{_signed(run.bwt.get(last_stage))}** (positive = earlier tasks got worse)"
        )
    if criteria_states:
        passed = sum(1 for _, ok in criteria_states if ok)
        lines.append(
            f"- Success criteria: {passed} of {len(criteria_states)} stages passed all their criteria"
            + (" — failed: " + ", ".join(f"stage {s.stage}" for s in failed) if failed else "")
        )
    if total_time:
        lines.append(f"- Time spent (training + validation + checkpointing): {_duration(total_time)}")
    missing = [s for s in done if s.results is None]
    if missing:
        lines.append("- Missing stage results: " + ", ".join(f"`{s.dir / STAGE_RESULTS_FILE}`" for s in missing))
    running = [s for s in run.with_curves if run.in_progress(s)]
    if running:
        lines.append(
            "- In progress (TensorBoard events but no results yet): "
            + ", ".join(f"stage {s.stage} {s.label}" for s in running)
        )
    if len(done) < n:
        lines.append(
            "- Still to train: " + ", ".join(f"stage {s.stage} {s.label}" for s in run.stages if s not in done)
        )
    lines.append("")

    # stage overview
    overview = []
    for s in run.stages:
        r = s.results or {}
        mix = r.get("replay_mix")
        overview.append(
            [
                f"{s.stage}",
                s.label,
                "done" if s in done else ("in progress" if s.scalars else "not run"),
                str(r.get("training_epochs", "—")),
                str(r.get("optimizer_steps", "—")),
                f"{finite(r.get('learning_rate')):g}" if finite(r.get("learning_rate")) is not None else "—",
                ", ".join(f"{k} {finite(v) or 0:.2f}" for k, v in mix.items()) if isinstance(mix, dict) else "—",
                f"{_f(r.get('best_loss'))} (epoch {r.get('best_epoch')})" if r.get("best_loss") is not None else "—",
            ]
        )
    lines += ["### Stages", ""]
    lines += _table(
        ["stage", "task", "status", "epochs", "steps", "lr", "replay mix", "best loss (epoch)"],
        overview,
        ["r", "l", "l", "r", "r", "r", "l", "r"],
    )
    lines.append("")

    # loss matrix
    lines += [
        "## Loss matrix",
        "",
        "R[stage][task]: validation loss on each task of the `best/` model of each stage (lower is better). "
        "**Bold** = the task trained in that stage; *italic* = task not trained yet (zero-shot loss, "
        "not counted in the average or BWT). avg = mean over trained tasks; BWT = mean change of earlier "
        "tasks' loss since their own stage (positive = forgetting).",
        "",
    ]
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
    lines += [
        "## Success criteria",
        "",
        "Each stage's final (best/) model: the task just trained must be below the current-task limit, "
        "earlier tasks below that stage's limit for earlier tasks.",
        "",
    ]
    for s in done:
        criteria = (s.results or {}).get("criteria") or []
        ok = _criteria_passed(s)
        verdict = "no criteria recorded" if ok is None else ("✅ all passed" if ok else "❌ failed")
        lines += [f"### Stage {s.stage}: {s.label} — {verdict}", ""]
        if criteria:
            lines += _table(
                ["task", "role", "loss", "limit", "result"],
                [
                    [
                        run.label(int(c.get("task_id", 0))),
                        str(c.get("role", "")),
                        _f(c.get("loss")),
                        _f(c.get("limit"), 3),
                        "✅ pass" if c.get("passed") else "❌ fail",
                    ]
                    for c in criteria
                ],
                ["l", "l", "r", "r", "l"],
            )
            lines.append("")

    # forgetting
    lines += [
        "## Forgetting",
        "",
        "For every earlier task after each stage: its loss now, its loss at the end of its own stage "
        "(reference), the ratio, the verdict, and the change against its best loss so far "
        "(positive = forgotten that much).",
        "",
    ]
    rows = []
    for s in done:
        for entry in (s.results or {}).get("forgetting") or []:
            task = int(entry.get("task_id", 0))
            loss, reference = finite(entry.get("loss")), finite(entry.get("reference"))
            ratio = f"x{loss / reference:.2f}" if loss is not None and reference else "—"
            rows.append(
                [
                    f"{s.stage}",
                    run.label(task),
                    _f(loss),
                    _f(reference),
                    ratio,
                    str(entry.get("verdict", "—")),
                    _signed(run.forgetting.get(s.stage, {}).get(task)),
                ]
            )
    if rows:
        lines += _table(
            ["after stage", "earlier task", "loss", "own-stage loss", "ratio", "verdict", "vs best so far"],
            rows,
            ["r", "l", "r", "r", "r", "l", "r"],
        )
    else:
        lines.append("No earlier tasks to check yet (forgetting starts with stage 2).")
    lines.append("")

    # curves
    lines += [
        "## Training curves",
        "",
        "Per stage: train loss per optimizer step (grey raw, black smoothed), validation loss of every "
        "evaluated task at each validation (thick = task trained in that stage), learning rate below.",
        "",
    ]
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
    rows, totals = [], dict.fromkeys(TIMING_PARTS, 0.0)
    for s in done:
        timings = (s.results or {}).get("timings_s") or {}
        steps = finite((s.results or {}).get("optimizer_steps"))
        train = finite(timings.get("training"))
        for key in totals:
            totals[key] += finite(timings.get(key)) or 0.0
        rows.append(
            [
                f"{s.stage} ({s.label})",
                *(_duration(timings.get(key)) for key in TIMING_PARTS),
                _duration(stage_seconds(timings)),
                f"{train / steps:.3f}" if train and steps else "—",
            ]
        )
    if rows:
        total = sum(stage_seconds((s.results or {}).get("timings_s") or {}) for s in done)
        rows.append(["**total**", *(f"**{_duration(v)}**" for v in totals.values()), f"**{_duration(total)}**", ""])
        header = ["stage", *(key.replace("_", " ") for key in TIMING_PARTS), "total", "s / step"]
        lines += _table(header, rows)
        if any("total" not in ((s.results or {}).get("timings_s") or {}) for s in done):
            lines += ["", "Stages trained by an older kuavo_train record only training, validation and checkpointing."]
    else:
        lines.append("No stage finished yet.")
    lines.append("")

    # instruction matrix
    lines += ["## Instruction following", ""]
    if run.instruction is not None:
        ins = run.instruction
        margin = ins.get("margin")
        lines += [
            f"From `{INSTRUCTION_MATRIX_FILE}`: action MSE of the model given each task's instruction (rows) "
            "on each task's data (columns). A model that follows the instruction has its lowest value of each "
            "column on the diagonal."
            + (
                f" Margin: **{_f(margin)}**."
                if finite(margin) is not None
                else (f" Margin: `{json.dumps(margin)}`." if margin is not None else "")
            ),
            "",
        ]
        if INSTRUCTION_MATRIX_PNG in images:
            lines += [f"![instruction matrix]({INSTRUCTION_MATRIX_PNG})", ""]
        rows = [
            [run.label(i)] + [(f"**{_f(v)}**" if i == t else _f(v)) for t, v in zip(ins["tasks"], row, strict=True)]
            for i, row in zip(ins["instructions"], ins["mse"], strict=True)
        ]
        lines += _table(["instruction \\ task"] + [run.label(t) for t in ins["tasks"]], rows)
        lines.append("")
    else:
        checkpoint = final.best_dir if final is not None else run.run_root / "<stage>" / BEST_DIR
        lines += [
            f"Not evaluated yet (`{INSTRUCTION_MATRIX_FILE}` not found). To measure whether the model follows "
            "the language instruction, run",
            "",
            "```bash",
            f"kuavo-train evaluate {checkpoint}",
            "```",
            "",
            f"which writes `{run.run_root / INSTRUCTION_MATRIX_FILE}`; then run `kuavo-train report "
            f"{run.run_root}` again.",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------------ output


def draw_pictures(run: RunData, into: Path) -> dict[str, str]:
    from kuavo_train.reporting import plots

    colors = plots.task_colors(run.task_order)
    labels = {t: run.label(t) for t in run.task_order}
    images = {}
    plots.plot_loss_matrix(into / LOSS_MATRIX_PNG, run.task_order, labels, run.matrix, run.average, run.bwt)
    images[LOSS_MATRIX_PNG] = LOSS_MATRIX_PNG
    all_curves = []
    for info in run.with_curves:
        curves = stage_curves(run, info)
        all_curves.append(curves)
        name = curves_stage_png(info.stage)
        plots.plot_stage_curves(into / name, curves, labels, colors)
        images[name] = name
    if all_curves:
        plots.plot_curves_all(into / CURVES_ALL_PNG, all_curves, run.task_order, labels, colors)
        images[CURVES_ALL_PNG] = CURVES_ALL_PNG
    if run.instruction is not None:
        ins = run.instruction
        plots.plot_instruction_matrix(
            into / INSTRUCTION_MATRIX_PNG, ins["instructions"], ins["tasks"], ins["mse"], labels, ins.get("margin")
        )
        images[INSTRUCTION_MATRIX_PNG] = INSTRUCTION_MATRIX_PNG
    return images


def is_report_file(name: str) -> bool:
    """A file a report writes (an older report's pictures that no longer apply are removed by this test)."""
    return name in (REPORT_FILE, LOSS_MATRIX_PNG, CURVES_ALL_PNG, INSTRUCTION_MATRIX_PNG) or (
        stage_of_curves_png(name) is not None
    )
