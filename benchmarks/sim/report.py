"""Tables and heatmaps of the sim benchmark (printed, and written to docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.sim.tasks import SIM_TASKS
from benchmarks.strategies import final_losses

IMAGE_NAME = "sim_success_matrices.png"
# Text below this line in docs/benchmarks.md is written by people and kept when --docs rewrites the tables.
NOTES_MARKER = "<!-- notes: everything below is kept by benchmarks/sim/run.py --docs -->"


def load_summary(path: Path) -> dict:
    """sim_results.json as run.py holds it in memory (JSON turned the stage/task keys into strings)."""
    summary = json.loads(path.read_text())
    for result in summary["strategies"].values():
        result["success_matrix"] = {
            int(stage): {int(task): value for task, value in row.items()}
            for stage, row in result["success_matrix"].items()
        }
        result["forgetting_success"] = {int(k): v for k, v in (result.get("forgetting_success") or {}).items()}
    return summary


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _signed_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.0f} pts"


def _forgetting(result: dict) -> str:
    values = result.get("forgetting_success") or {}
    if result["strategy"] == "joint" or not values:
        return "-"
    names = {t.id: t.name for t in SIM_TASKS}
    return ", ".join(f"{names[int(task)]} {100 * value:.0f}" for task, value in values.items()) + " pts"


def final_table(summary: dict) -> str:
    header = (
        "| strategy | "
        + " | ".join(t.name for t in SIM_TASKS)
        + " | average success | BWT (success) | forgetting per task | final val. loss (avg) | optimizer steps |"
    )
    lines = [header, "|" + "---|" * (len(SIM_TASKS) + 6)]
    for name, result in summary["strategies"].items():
        matrix = result["success_matrix"]
        row = matrix[max(matrix)]
        cells = " | ".join(_pct(row[t.id]) for t in SIM_TASKS)
        _, avg_loss = final_losses(result["loss_matrix"])
        lines.append(
            f"| {name} | {cells} | {_pct(result['average_success'])} | {_signed_pct(result['bwt_success'])} "
            f"| {_forgetting(result)} | {avg_loss:.3f} | {result.get('optimizer_steps', '-')} |"
        )
    return "\n".join(lines)


def matrix_table(result: dict) -> str:
    """S[stage][task] with the validation loss of the same model in brackets."""
    header = "| model after | " + " | ".join(t.name for t in SIM_TASKS) + " |"
    lines = [header, "|" + "---|" * (len(SIM_TASKS) + 1)]
    for stage, row in sorted(result["success_matrix"].items()):
        losses = result["loss_matrix"].get(str(stage), {})
        label = "joint training" if result["strategy"] == "joint" else f"stage {stage} ({SIM_TASKS[stage - 1].name})"
        cells = " | ".join(
            f"{_pct(row[t.id])} ({losses[str(t.id)]:.3f})" if str(t.id) in losses else _pct(row[t.id])
            for t in SIM_TASKS
        )
        lines.append(f"| {label} | {cells} |")
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    parts = [
        "Closed-loop success of the final model per task (BWT < 0 = forgetting; forgetting = best success "
        "after the task's own stage minus the final one):",
        final_table(summary),
    ]
    for name, result in summary["strategies"].items():
        parts += ["", f"{name}: success S[stage][task] (validation loss)", matrix_table(result)]
    seconds = ", ".join(
        f"{n} {r['seconds']['train']:.0f}s train + {r['seconds']['closed_loop']:.0f}s closed loop"
        for n, r in summary["strategies"].items()
    )
    parts += [
        "",
        f"time: demos {summary['seconds']['demos']:.0f}s, {seconds}; total {summary['seconds']['total']:.0f}s",
    ]
    return "\n".join(parts)


def setup_lines(summary: dict) -> list[str]:
    """Model, device and machine of the run, as run.py recorded them from its config and this machine."""
    model, device = summary.get("model"), summary.get("device")
    if model is None or device is None:  # a sim_results.json from before they were recorded
        return [f"Machine: {summary['machine']} (model and device not recorded in this sim_results.json).  "]
    text = f"Model: VLM backbone `{model['vlm']}` ({model['vlm_weights']}, {model['vlm_layers']} layers"
    text += f", {model['frozen_vlm_layers']} frozen)" if model.get("frozen_vlm_layers") else ")"
    if model.get("pretrained_policy"):
        text += f", starting from `{model['pretrained_policy']}`"
    text += ", {}x{} images".format(*model["image_size"])
    if model.get("parameters"):
        text += f", {model['parameters'] / 1e6:.2f} M parameters"
    return [f"{text}.  ", f"Device: {device['device']} ({device['precision']}) on {summary['machine']}.  "]


def plot_matrices(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = list(summary["strategies"].values())
    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 3.4), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        stages = sorted(result["success_matrix"])
        grid = [[result["success_matrix"][s][t.id] for t in SIM_TASKS] for s in stages]
        ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_title(result["strategy"])
        ax.set_xticks(range(len(SIM_TASKS)), [t.name for t in SIM_TASKS], rotation=30, ha="right", fontsize=8)
        labels = ["joint"] if result["strategy"] == "joint" else [f"after {SIM_TASKS[s - 1].name}" for s in stages]
        ax.set_yticks(range(len(stages)), labels, fontsize=8)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", color="white" if value < 0.6 else "black")
    fig.suptitle("Closed-loop success (%) of each stage's model on each task")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_docs(summary: dict, docs_dir: Path) -> Path:
    plot_matrices(summary, docs_dir / "img" / IMAGE_NAME)
    budget = summary["budget"]
    sections = [
        "# Closed-loop benchmark: four Meta-World tasks learned in sequence",
        "",
        "Generated by `benchmarks/sim/run.py` (the tables below are rewritten on every `--docs` run).",
        "The tasks, why they were chosen, and the observation/action spaces: `benchmarks/sim/tasks.py`;",
        "how demonstrations are made: `benchmarks/sim/demos.py`; how episodes are scored:",
        "`benchmarks/sim/closed_loop.py`; the metrics: `benchmarks/sim/metrics.py`; the strategies:",
        "`benchmarks/strategies.py`; the training config: `configs/policy/smolvla_sequential_metaworld.yaml`.",
        "",
        f"Command: `.venv/bin/python {summary['command']}`  ",
        *setup_lines(summary),
        f"Budget: {budget['episodes']} expert episodes per task "
        f"({budget['validation_episodes']} held out for validation), "
        f"{budget['epochs']} epochs x "
        f"{budget['steps_per_epoch']} optimizer steps x batch {budget['batch_size']} per stage for every strategy (the "
        f"joint run: {len(SIM_TASKS)} x {budget['steps_per_epoch']} steps per epoch, "
        "the sequential runs' sum; `training."
        f"steps_per_epoch`, so every strategy gets the same budget; the steps each really ran are in the "
        f"table), {budget['eval_episodes']} closed-loop episodes per (model, task) on seeds never used for "
        "demonstrations.  ",
        f"Wall time: {summary['seconds']['total'] / 60:.1f} min in all.",
        "",
        "## Final model, every task",
        "",
        final_table(summary),
        "",
        (
            "BWT (success) = mean over tasks 1-3 of (success of the final model - "
            "success right after the task's own stage);"
        ),
        "negative = forgetting. Forgetting of a task = its best success after its own stage minus its final success.",
        "The last column is the mean held-out validation loss of the same final model.",
        "",
        f"![success matrices](img/{IMAGE_NAME})",
        "",
        "## Success matrices S[stage][task] (validation loss of the same model in brackets)",
    ]
    for name, result in summary["strategies"].items():
        sections += ["", f"### {name}", "", matrix_table(result)]
    path = docs_dir / "benchmarks.md"
    notes = path.read_text().partition(NOTES_MARKER)[2] if path.is_file() else ""
    path.write_text("\n".join(sections) + "\n\n" + NOTES_MARKER + (notes or "\n"))
    return path
