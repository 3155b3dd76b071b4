"""Tables and plots of the sim benchmark (printed, and written to docs/benchmarks.md).

Every figure is the mean over the training seeds that finished, with the half-width of its 95%
confidence interval (t over seeds; ``benchmarks.sim.metrics.mean_ci``); with one seed there is no
interval. Differences between strategies are paired by seed (same seed, same evaluation episodes).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.sim.metrics import differs, mean_ci, paired_difference
from benchmarks.sim.tasks import LANGUAGE_PAIR, SIM_TASKS

IMAGE_NAME = "sim_success_matrices.png"
FINAL_IMAGE_NAME = "sim_final_success.png"
# Text below this line in docs/benchmarks.md is written by people and kept when --docs rewrites the tables.
NOTES_MARKER = "<!-- notes: everything below is kept by benchmarks/sim/run.py --docs -->"
Cells = dict[str, dict]  # seed -> sim_cell.json of one strategy


def tasks_of(summary: dict) -> list:
    names = summary["budget"].get("tasks") or [t.name for t in SIM_TASKS]
    return [t for t in SIM_TASKS if t.name in names]


def _seeds(cells: Cells) -> list[str]:
    return sorted(cells, key=int)


def _final_row(cell: dict) -> dict[str, float]:
    matrix = cell["success_matrix"]
    return matrix[max(matrix, key=int)]


def _mean_forgetting(cell: dict) -> float | None:
    values = list((cell.get("forgetting_success") or {}).values())
    return sum(values) / len(values) if values and cell["strategy"] != "joint" else None


def _ci(values: list[float | None], scale: float = 100.0, signed: bool = False) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return _pm(mean_ci(values), scale, signed)


def _pm(stat: tuple[float, float | None], scale: float = 100.0, signed: bool = False) -> str:
    """'mean ± half-width' in points (no interval: the mean alone)."""
    mean, half = stat
    text = f"{scale * mean:+.0f}" if signed else f"{scale * mean:.0f}"
    return text + (f" ± {scale * half:.0f}" if half is not None else "")


def per_seed(cells: Cells, value) -> list:
    return [value(cells[seed]) for seed in _seeds(cells)]


def train_minutes(cells: Cells) -> float:
    values = per_seed(cells, lambda c: c["seconds"]["train"] / 60)
    return sum(values) / len(values)


def final_table(summary: dict) -> str:
    tasks = tasks_of(summary)
    header = (
        "| strategy | seeds | "
        + " | ".join(f"{t.name} (%)" for t in tasks)
        + " | average (%) | BWT (pts) | forgetting (pts) | optimizer steps | train min / seed | compute vs naive |"
    )
    lines = [header, "|" + "---|" * (len(tasks) + 8)]
    strategies = summary["strategies"]
    naive = train_minutes(strategies["naive"]) if "naive" in strategies else None
    for name, cells in strategies.items():
        task_cells = " | ".join(_ci(per_seed(cells, lambda c, t=t: _final_row(c)[str(t.id)])) for t in tasks)
        steps = sorted(set(per_seed(cells, lambda c: c["optimizer_steps"])))
        minutes = train_minutes(cells)
        lines.append(
            f"| {name} | {len(cells)} | {task_cells} | {_ci(per_seed(cells, lambda c: c['average_success']))} "
            f"| {_ci(per_seed(cells, lambda c: c['bwt_success']), signed=True)} "
            f"| {_ci(per_seed(cells, _mean_forgetting))} | {'/'.join(map(str, steps))} | {minutes:.1f} "
            f"| {f'{minutes / naive:.2f}x' if naive else '-'} |"
        )
    return "\n".join(lines)


def difference_table(summary: dict) -> str:
    """Each strategy's final average minus joint's and minus the best sequential one's, paired by seed."""
    strategies = summary["strategies"]
    sequential = {n: c for n, c in strategies.items() if n != "joint"}
    if not sequential:
        return ""
    best = max(sequential, key=lambda n: mean_ci(per_seed(sequential[n], lambda c: c["average_success"]))[0])
    references = [r for r in ("joint", best) if r in strategies]
    header = "| strategy | " + " | ".join(f"minus {r} (pts)" for r in references) + " |"
    lines = [header, "|" + "---|" * (len(references) + 1)]
    for name, cells in strategies.items():
        row = []
        for reference in references:
            shared = sorted(set(cells) & set(strategies[reference]), key=int)
            if name == reference or not shared:
                row.append("-")
                continue
            mine = [cells[s]["average_success"] for s in shared]
            theirs = [strategies[reference][s]["average_success"] for s in shared]
            diff = paired_difference(mine, theirs)
            text = _pm(diff, signed=True)
            row.append(f"**{text}**" if differs(diff) else text)
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def language_table(summary: dict) -> str:
    tasks = [t for t in tasks_of(summary) if t.name in LANGUAGE_PAIR]
    if len(tasks) < 2:
        return ""
    other = {tasks[0].name: tasks[1].name, tasks[1].name: tasks[0].name}
    header = "| strategy | " + " | ".join(
        f"'{t.name}' instructed: {t.name} done (%) | '{t.name}' instructed: {other[t.name]} done instead (%)"
        for t in tasks
    )
    lines = [header + " |", "|" + "---|" * (2 * len(tasks) + 1)]
    for name, cells in summary["strategies"].items():
        parts = []
        for t in tasks:
            parts.append(_ci(per_seed(cells, lambda c, t=t: c["language"][t.name]["success"])))
            parts.append(_ci(per_seed(cells, lambda c, t=t: c["language"][t.name]["other_behaviour"])))
        lines.append(f"| {name} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def mean_matrix(cells: Cells) -> dict[int, dict[int, tuple[float, float | None]]]:
    stages = sorted(next(iter(cells.values()))["success_matrix"], key=int)
    tasks = sorted(next(iter(cells.values()))["success_matrix"][stages[0]], key=int)
    return {
        int(s): {int(t): mean_ci(per_seed(cells, lambda c, s=s, t=t: c["success_matrix"][s][t])) for t in tasks}
        for s in stages
    }


def matrix_table(name: str, cells: Cells, tasks: list) -> str:
    """S[stage][task] mean ± CI over seeds, with the mean validation loss of the same model in brackets."""
    header = "| model after | " + " | ".join(t.name for t in tasks) + " |"
    lines = [header, "|" + "---|" * (len(tasks) + 1)]
    for stage, row in mean_matrix(cells).items():
        label = "joint training" if name == "joint" else f"stage {stage} ({tasks[stage - 1].name})"
        parts = []
        for t in tasks:
            text = _pm(row[t.id])
            losses = [c["loss_matrix"].get(str(stage), {}).get(str(t.id)) for c in cells.values()]
            losses = [v for v in losses if v is not None]
            parts.append(text + (f" ({sum(losses) / len(losses):.3f})" if losses else ""))
        lines.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def base_line(summary: dict) -> str:
    base = summary.get("base") or {}
    zero = base.get("zero_shot")
    if not zero:
        return f"Base: `{base.get('checkpoint', '-')}`."
    names = {t.id: t.name for t in SIM_TASKS}
    shots = ", ".join(f"{names[int(k)]} {100 * v:.0f}%" for k, v in zero.items())
    return (
        f"Pretrained base: the tiny SmolVLA trained multi-task on {len(base['tasks'])} other Meta-World tasks "
        f"({', '.join(base['tasks'])}; {base['episodes_per_task']} demonstrations each, "
        f"{base['optimizer_steps']} optimizer steps, `benchmarks/sim/pretrain.py`). Its success on the "
        f"curriculum tasks before any stage ({summary['budget']['eval_episodes']} episodes each): {shots}."
    )


def format_summary(summary: dict) -> str:
    tasks = tasks_of(summary)
    parts = [
        base_line(summary),
        "",
        "Closed-loop success of the final model per task, mean ± 95% CI over seeds (BWT < 0 = forgetting; "
        "forgetting = best success after the task's own stage minus the final one, mean over tasks 1..T-1):",
        final_table(summary),
        "",
        "Final average, paired by seed (bold: the 95% interval excludes 0):",
        difference_table(summary),
    ]
    language = language_table(summary)
    if language:
        parts += ["", "Language switching on the shared scene (final model):", language]
    for name, cells in summary["strategies"].items():
        parts += ["", f"{name}: success S[stage][task] % (validation loss)", matrix_table(name, cells, tasks)]
    return "\n".join(parts)


def _checkpoint_name(path: str) -> str:
    """A local base's run dir by name (pretrained_base_<hash>), a hub id as is."""
    local = Path(path)
    return local.parent.parent.name if local.is_absolute() else path


def setup_lines(summary: dict) -> list[str]:
    """Model, device and machine of the run, as run.py recorded them from its config and this machine."""
    model, device = summary.get("model"), summary.get("device")
    if model is None or device is None:
        return [f"Machine: {summary['machine']} (model and device not recorded).  "]
    text = f"Model: VLM backbone `{model['vlm']}` ({model['vlm_weights']}, {model['vlm_layers']} layers"
    text += f", {model['frozen_vlm_layers']} frozen)" if model.get("frozen_vlm_layers") else ")"
    if model.get("pretrained_policy"):
        text += f", stage 1 starting from `{_checkpoint_name(model['pretrained_policy'])}`"
    text += ", {}x{} images".format(*model["image_size"])
    if model.get("parameters"):
        text += f", {model['parameters'] / 1e6:.2f} M parameters"
    return [f"{text}.  ", f"Device: {device['device']} ({device['precision']}) on {summary['machine']}.  "]


def plot_matrices(summary: dict, path: Path) -> Path:
    """One heatmap per strategy: mean success over seeds, each cell annotated mean±CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = tasks_of(summary)
    items = list(summary["strategies"].items())
    fig, axes = plt.subplots(1, len(items), figsize=(3.8 * len(items), 3.6), squeeze=False)
    for ax, (name, cells) in zip(axes[0], items, strict=True):
        matrix = mean_matrix(cells)
        stages = sorted(matrix)
        grid = [[matrix[s][t.id][0] for t in tasks] for s in stages]
        ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_title(f"{name} ({len(cells)} seeds)")
        ax.set_xticks(range(len(tasks)), [t.name for t in tasks], rotation=30, ha="right", fontsize=8)
        labels = ["joint"] if name == "joint" else [f"after {tasks[s - 1].name}" for s in stages]
        ax.set_yticks(range(len(stages)), labels, fontsize=8)
        for i, s in enumerate(stages):
            for j, t in enumerate(tasks):
                mean, half = matrix[s][t.id]
                text = f"{100 * mean:.0f}" + (f"\n±{100 * half:.0f}" if half is not None else "")
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if mean < 0.6 else "black")
    fig.suptitle("Closed-loop success (%) of each stage's model on each task, mean ± 95% CI over seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_final(summary: dict, path: Path) -> Path:
    """Bars: the final model's success per task and strategy, with 95% CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = tasks_of(summary)
    items = list(summary["strategies"].items())
    width = 0.8 / len(items)
    fig, ax = plt.subplots(figsize=(1.8 * (len(tasks) + 1) + 2, 3.6))
    for k, (name, cells) in enumerate(items):
        stats = [mean_ci(per_seed(cells, lambda c, t=t: _final_row(c)[str(t.id)])) for t in tasks]
        stats.append(mean_ci(per_seed(cells, lambda c: c["average_success"])))
        xs = [i + (k - (len(items) - 1) / 2) * width for i in range(len(stats))]
        errors = [100 * (h or 0) for _, h in stats]
        ax.bar(xs, [100 * m for m, _ in stats], width, yerr=errors, capsize=2, label=name)
    ax.set_xticks(range(len(tasks) + 1), [t.name for t in tasks] + ["average"])
    ax.set_ylabel("final model success (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=len(items), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def budget_line(summary: dict) -> str:
    budget = summary["budget"]
    n = len(tasks_of(summary))
    return (
        f"Budget: {budget['episodes']} expert episodes per task ({budget['validation_episodes']} held out for "
        f"validation), {budget['epochs']} epochs x {budget['steps_per_epoch']} optimizer steps x batch "
        f"{budget['batch_size']} per stage for every sequential strategy (joint: {n} x {budget['steps_per_epoch']} "
        "steps per epoch, the stages' sum; the steps each really ran are in the table). Closed loop on seeds "
        f"never used for demonstrations: {budget['final_episodes']} episodes per task for the final model, "
        f"{budget['eval_episodes']} per cell for the earlier stages' models, per training seed.  "
    )


def write_docs(summary: dict, docs_dir: Path) -> Path:
    plot_matrices(summary, docs_dir / "img" / IMAGE_NAME)
    plot_final(summary, docs_dir / "img" / FINAL_IMAGE_NAME)
    tasks = tasks_of(summary)
    sections = [
        "# Closed-loop benchmark: four held-out Meta-World tasks learned in sequence from a pretrained base",
        "",
        "Generated by `benchmarks/sim/run.py` (the tables below are rewritten on every `--docs` run).",
        "The tasks and why they were chosen: `benchmarks/sim/tasks.py`; the pretrained base:",
        "`benchmarks/sim/pretrain.py`; demonstrations: `benchmarks/sim/demos.py`; scoring:",
        "`benchmarks/sim/closed_loop.py`; metrics and intervals: `benchmarks/sim/metrics.py`; strategies:",
        "`benchmarks/strategies.py`; training config: `configs/policy/smolvla_sequential_metaworld.yaml`.",
        "",
        f"Command: `.venv/bin/python {summary['command']}`  ",
        *setup_lines(summary),
        budget_line(summary),
        "",
        base_line(summary),
        "",
        "## Final model, every task (mean ± 95% CI over training seeds)",
        "",
        final_table(summary),
        "",
        "BWT (success) = mean over tasks 1..T-1 of (final success - success right after the task's own stage); "
        "negative = forgetting. Forgetting = best success after a task's own stage minus its final success, "
        "averaged over tasks 1..T-1. Compute = training wall time per seed relative to naive.",
        "",
        f"![final success](img/{FINAL_IMAGE_NAME})",
        "",
        "## Differences in final average success, paired by seed",
        "",
        "Bold: the 95% confidence interval of the paired difference excludes 0 (only those are called a "
        "difference in the text).",
        "",
        difference_table(summary),
    ]
    language = language_table(summary)
    if language:
        sections += [
            "",
            "## Language switching: one scene, two instructions",
            "",
            "Reach and pick-place start from the same scene and the same initial states (the same reset seed gives "
            "the same observation), so only the instruction says which to do. For the final model: how often the "
            "instructed task was done, and how often the other task's behaviour was seen instead (under 'reach': "
            "the puck carried to the goal; under 'pick_place': the empty gripper brought to the goal).",
            "",
            language,
        ]
    sections += [
        "",
        f"![success matrices](img/{IMAGE_NAME})",
        "",
        "## Success matrices S[stage][task] in % (mean validation loss of the same model in brackets)",
    ]
    for name, cells in summary["strategies"].items():
        sections += ["", f"### {name}", "", matrix_table(name, cells, tasks)]
    path = docs_dir / "benchmarks.md"
    notes = path.read_text().partition(NOTES_MARKER)[2] if path.is_file() else ""
    path.write_text("\n".join(sections) + "\n\n" + NOTES_MARKER + (notes or "\n"))
    return path
