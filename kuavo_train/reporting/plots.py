"""The report's pictures, drawn with matplotlib's Agg canvas from plain numbers (no torch, no training code).

Figures are made with ``matplotlib.figure.Figure`` and ``FigureCanvasAgg`` directly, not pyplot: no global
backend switch, no display needed, nothing left open.

Every figure has a fixed size (``figsize * DPI`` pixels, no tight bbox), so callers and tests know the PNG's
dimensions in advance. Each task keeps one colour in every picture (``task_colors``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullLocator

DPI = 110
UNTRAINED_COLOR = "#e6e6e6"
MISSING_COLOR = "#ffffff"
LOG_Y_RATIO = 10.0  # log y-axis once the plotted losses span more than this factor


@dataclass
class StageCurves:
    """What one stage's curve picture needs; steps count optimizer steps from 1 within the stage."""

    stage: int
    task_id: int
    title: str
    train_steps: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr_steps: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    validation: dict[int, tuple[list[float], list[float]]] = field(default_factory=dict)  # task -> (steps, losses)
    best_step: float | None = None
    total_steps: float | None = None
    source: str = "tensorboard"


def task_colors(task_order: Sequence[int]) -> dict[int, tuple]:
    cmap = colormaps["tab10"]
    return {task: cmap(i % 10) for i, task in enumerate(task_order)}


def loss_matrix_figsize(n_stages: int, n_tasks: int) -> tuple[float, float]:
    return (3.4 + 1.55 * n_tasks + 2.0, 2.0 + 0.72 * max(n_stages, 1))


def curves_stage_figsize() -> tuple[float, float]:
    return (10.0, 6.2)


def curves_all_figsize(n_stages: int) -> tuple[float, float]:
    return (max(10.0, 2.6 * n_stages + 2.0), 5.6)


def instruction_matrix_figsize(n_rows: int, n_cols: int) -> tuple[float, float]:
    return (3.6 + 1.45 * n_cols + 1.2, 2.2 + 0.62 * max(n_rows, 1))


def figure_pixels(figsize: tuple[float, float]) -> tuple[int, int]:
    """(height, width) of the saved PNG, as ``matplotlib.image.imread(...).shape[:2]`` reports it."""
    return int(figsize[1] * DPI), int(figsize[0] * DPI)  # what the Agg canvas does


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def _plain_colorbar_labels(bar) -> None:
    """Plain numbers (0.3, 0.5, 2) instead of 3x10^-1 on a log-scaled colour bar."""
    if isinstance(bar.norm, LogNorm):
        bar.ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        bar.ax.xaxis.set_minor_locator(NullLocator())
    bar.ax.xaxis.set_major_formatter(FormatStrFormatter("%.3g"))


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI, facecolor="white", format="png")


def _text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if (0.299 * r + 0.587 * g + 0.114 * b) > 0.55 else "white"


def _norm(values: list[float]):
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > LOG_Y_RATIO:
        return LogNorm(vmin=min(positive), vmax=max(positive))
    if not values:
        return Normalize(0, 1)
    lo, hi = min(values), max(values)
    return Normalize(lo, hi if hi > lo else lo + 1e-9)


def plot_loss_matrix(
    path: Path,
    task_order: Sequence[int],
    task_labels: Mapping[int, str],
    matrix: Mapping[int, Mapping[int, float | None]],
    average: Mapping[int, float | None],
    bwt: Mapping[int, float | None],
) -> None:
    """Heatmap R[stage][task]: stage s trained task_order[s-1]. Cells of tasks not trained yet are grey/hatched
    (their value is the zero-shot loss, kept out of the colour scale); stages not run yet are marked as such."""
    stages = list(range(1, len(task_order) + 1))
    n_stages, n_tasks = len(stages), len(task_order)
    fig = _figure(loss_matrix_figsize(n_stages, n_tasks))
    ax = fig.subplots()
    trained_values = _finite(matrix.get(s, {}).get(t) for s in stages for j, t in enumerate(task_order) if j < s)
    norm = _norm(trained_values)
    cmap = colormaps["RdYlGn_r"]
    ax.set_xlim(-0.5, n_tasks - 0.5)
    ax.set_ylim(n_stages - 0.5, -0.5)
    value_size = 11 if n_tasks <= 6 else 8
    for i, stage in enumerate(stages):
        row = matrix.get(stage)
        for j, task in enumerate(task_order):
            xy = (j - 0.5, i - 0.5)
            if row is None:
                ax.add_patch(Rectangle(xy, 1, 1, facecolor=MISSING_COLOR, edgecolor="#bbbbbb", hatch="..", lw=0.5))
                if j == 0:
                    ax.text(
                        (n_tasks - 1) / 2,
                        i,
                        "stage not run yet",
                        ha="center",
                        va="center",
                        fontsize=10,
                        color="#666666",
                        style="italic",
                        bbox=dict(facecolor="white", edgecolor="none", pad=1.5),
                    )
                continue
            value = row.get(task)
            trained = j <= i
            if value is None or not math.isfinite(value):
                ax.add_patch(Rectangle(xy, 1, 1, facecolor=MISSING_COLOR, edgecolor="#bbbbbb", lw=0.5))
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=value_size, color="#666666")
                continue
            if trained:
                color = cmap(norm(value))
                ax.add_patch(Rectangle(xy, 1, 1, facecolor=color, edgecolor="white", lw=1.0))
                weight = "bold" if j == i else "normal"
                ax.text(
                    j,
                    i,
                    f"{value:.3f}",
                    ha="center",
                    va="center",
                    fontsize=value_size,
                    color=_text_color(color),
                    weight=weight,
                )
            else:
                ax.add_patch(Rectangle(xy, 1, 1, facecolor=UNTRAINED_COLOR, edgecolor="#9a9a9a", hatch="///", lw=0.5))
                ax.text(
                    j,
                    i,
                    f"{value:.3f}\nnot trained",
                    ha="center",
                    va="center",
                    fontsize=value_size - 2,
                    color="#555555",
                    style="italic",
                    bbox=dict(facecolor=UNTRAINED_COLOR, edgecolor="none", pad=1.0, alpha=0.9),
                )
            if j == i:
                ax.add_patch(Rectangle(xy, 1, 1, fill=False, edgecolor="black", lw=2.0))
    ax.set_xticks(range(n_tasks), [task_labels.get(t, f"task {t}") for t in task_order], fontsize=9)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("evaluated on task", fontsize=10)
    ax.set_yticks(
        range(n_stages), [f"stage {s}: after\n{task_labels.get(task_order[s - 1], '')}" for s in stages], fontsize=9
    )
    ax.set_ylabel("model (best/ of stage)", fontsize=10)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)

    right = ax.secondary_yaxis("right")
    right.set_yticks(
        range(n_stages), [_avg_bwt_label(average.get(s), bwt.get(s), s in matrix) for s in stages], fontsize=9
    )
    right.tick_params(length=0)
    right.set_ylabel("avg loss over trained tasks | BWT", fontsize=9)
    for spine in right.spines.values():
        spine.set_visible(False)

    mappable = ScalarMappable(norm=norm, cmap=cmap)
    bar = fig.colorbar(mappable, ax=ax, orientation="horizontal", location="bottom", fraction=0.06, pad=0.02, aspect=40)
    bar.set_label(
        "validation loss of trained tasks (lower is better; bold box = task trained in that stage;"
        " grey hatched = not trained yet, zero-shot loss)",
        fontsize=8.5,
    )
    bar.ax.tick_params(labelsize=8)
    _plain_colorbar_labels(bar)
    fig.suptitle("Loss matrix R[stage][task]", fontsize=12, weight="bold")
    _save(fig, path)


def _avg_bwt_label(average: float | None, bwt: float | None, done: bool) -> str:
    if not done:
        return "—"
    avg = f"avg {average:.3f}" if average is not None else "avg —"
    return f"{avg}\nBWT {bwt:+.3f}" if bwt is not None else f"{avg}\nBWT —"


def smooth(values: Sequence[float], weight: float | None = None) -> list[float]:
    """TensorBoard-style debiased exponential moving average; the weight grows with the number of points."""
    n = len(values)
    if n == 0:
        return []
    if weight is None:
        weight = min(0.98, max(0.0, 1.0 - 15.0 / n))
    out, last, debias = [], 0.0, 1.0
    for v in values:
        last = last * weight + (1 - weight) * v
        debias *= weight
        out.append(last / (1 - debias) if debias < 1 else v)
    return out


def _maybe_log(ax, values: list[float]) -> bool:
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > LOG_Y_RATIO:
        ax.set_yscale("log")
        return True
    return False


def plot_stage_curves(
    path: Path, curves: StageCurves, task_labels: Mapping[int, str], colors: Mapping[int, tuple]
) -> None:
    """Top: train loss per step (faint raw, bold smoothed) and validation loss per task at each validation;
    bottom: learning rate. Log-y when the losses span more than LOG_Y_RATIO."""
    has_lr = bool(curves.lr)
    fig = _figure(curves_stage_figsize())
    axes = fig.subplots(
        2 if has_lr else 1, 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3.2, 1]} if has_lr else None
    )
    ax = axes[0][0]
    plotted: list[float] = []
    train = [
        (s, v) for s, v in zip(curves.train_steps, curves.train_loss, strict=True) if v is not None and math.isfinite(v)
    ]
    if train:
        steps, values = zip(*train, strict=True)
        if len(values) > 1 and curves.source == "tensorboard":
            ax.plot(steps, values, color="#9e9e9e", lw=0.6, alpha=0.45, label="train loss (per step)")
            ax.plot(steps, smooth(values), color="black", lw=1.8, label="train loss (smoothed)")
        else:
            ax.plot(steps, values, color="black", lw=1.8, marker="s", ms=4, label="train loss (epoch mean)")
        plotted += list(values)
    for task, (steps, losses) in sorted(curves.validation.items(), key=lambda kv: kv[0] != curves.task_id):
        pairs = [(s, v) for s, v in zip(steps, losses, strict=True) if v is not None and math.isfinite(v)]
        if not pairs:
            continue
        s, v = zip(*pairs, strict=True)
        current = task == curves.task_id
        ax.plot(
            s,
            v,
            color=colors.get(task, "C0"),
            marker="o",
            ms=6 if current else 4.5,
            lw=2.4 if current else 1.4,
            ls="-" if current else "--",
            label=f"validation {task_labels.get(task, task)}" + (" (current)" if current else ""),
        )
        plotted += list(v)
    if curves.best_step is not None:
        ax.axvline(curves.best_step, color="#2e7d32", lw=1.0, ls=":", label="best epoch (best/)")
    log = _maybe_log(ax, plotted)
    ax.set_ylabel("loss" + (" (log scale)" if log else ""))
    ax.grid(True, which="major", alpha=0.3)
    if log:
        ax.grid(True, which="minor", alpha=0.12)
    ax.set_title(curves.title, fontsize=11)
    if plotted:
        ax.legend(fontsize=8, loc="upper right", framealpha=0.85, ncol=2 if len(curves.validation) > 3 else 1)
    else:
        ax.text(
            0.5,
            0.5,
            "no curves recorded for this stage",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="#666666",
        )
    if has_lr:
        lax = axes[1][0]
        lax.plot(curves.lr_steps, curves.lr, color="#1565c0", lw=1.3)
        lax.set_ylabel("learning rate")
        lax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        lax.grid(True, alpha=0.3)
        lax.set_xlabel("optimizer step (within this stage)")
    else:
        ax.set_xlabel("optimizer step (within this stage)")
    if curves.total_steps:
        ax.set_xlim(0, curves.total_steps * 1.02)
    _save(fig, path)


def plot_curves_all(
    path: Path,
    stages: Sequence[StageCurves],
    task_order: Sequence[int],
    task_labels: Mapping[int, str],
    colors: Mapping[int, tuple],
) -> None:
    """Validation loss of every task across the whole curriculum (x: optimizer steps since stage 1 began),
    stage boundaries as vertical lines, smoothed train loss in grey for scale."""
    fig = _figure(curves_all_figsize(len(stages)))
    ax = fig.subplots()
    offset = 0.0
    plotted: list[float] = []
    seen: set[int] = set()
    boundaries = []
    train_labeled = False
    for curves in stages:
        length = curves.total_steps or max(
            [*curves.train_steps, *[s for st, _ in curves.validation.values() for s in st], 0.0]
        )
        train = [
            (s, v)
            for s, v in zip(curves.train_steps, curves.train_loss, strict=True)
            if v is not None and math.isfinite(v)
        ]
        if train:
            steps, values = zip(*train, strict=True)
            shown = smooth(values) if curves.source == "tensorboard" and len(values) > 1 else list(values)
            ax.plot(
                [offset + s for s in steps],
                shown,
                color="#b0b0b0",
                lw=1.0,
                zorder=1,
                label=None if train_labeled else "train loss",
            )
            train_labeled = True
        for task, (steps, losses) in curves.validation.items():
            pairs = [(offset + s, v) for s, v in zip(steps, losses, strict=True) if v is not None and math.isfinite(v)]
            if not pairs:
                continue
            s, v = zip(*pairs, strict=True)
            ax.plot(
                s,
                v,
                color=colors.get(task, "C0"),
                marker="o",
                ms=4,
                lw=1.8,
                zorder=3,
                label=None if task in seen else f"validation {task_labels.get(task, task)}",
            )
            seen.add(task)
            plotted += list(v)
        boundaries.append((offset, offset + length, curves))
        offset += length
    log = _maybe_log(ax, plotted) if plotted else False
    for start, end, curves in boundaries:
        if start > 0:
            ax.axvline(start, color="black", lw=1.0, ls="--", alpha=0.6, zorder=2)
        ax.axvspan(start, end, color=colors.get(curves.task_id, "C0"), alpha=0.06, lw=0, zorder=0)
        ax.text(
            (start + end) / 2,
            1.01,
            f"stage {curves.stage}\n{task_labels.get(curves.task_id, '')}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=9,
            color=colors.get(curves.task_id, "black"),
            weight="bold",
        )
    if offset > 0:
        ax.set_xlim(0, offset * 1.01)
    ax.set_xlabel("optimizer step (cumulative over the curriculum)")
    ax.set_ylabel("loss" + (" (log scale)" if log else ""))
    ax.grid(True, alpha=0.3)
    if plotted:
        ax.legend(fontsize=8.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.9)
    else:
        ax.text(0.5, 0.5, "no validation recorded yet", transform=ax.transAxes, ha="center", va="center")
    fig.suptitle(
        "Validation loss of each task across the curriculum (dashed lines: stage boundaries)",
        fontsize=11,
        weight="bold",
    )
    _save(fig, path)


def plot_instruction_matrix(
    path: Path,
    instructions: Sequence[int],
    tasks: Sequence[int],
    mse: Sequence[Sequence[float | None]],
    task_labels: Mapping[int, str],
    margin=None,
) -> None:
    """Heatmap of action MSE: rows = instruction given, columns = task whose data is evaluated.
    Matching instruction/task cells are outlined; a policy that listens to the instruction has each column's minimum
    on the diagonal."""
    n_rows, n_cols = len(instructions), len(tasks)
    fig = _figure(instruction_matrix_figsize(n_rows, n_cols))
    ax = fig.subplots()
    values = np.array([[np.nan if v is None else float(v) for v in row] for row in mse], dtype=float)
    finite = [float(v) for v in values.flatten() if math.isfinite(v)]
    norm = _norm(finite)
    cmap = colormaps["viridis_r"]
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)
    size = 10 if n_cols <= 6 else 8
    for i, instruction in enumerate(instructions):
        for j, task in enumerate(tasks):
            value = values[i, j] if i < values.shape[0] and j < values.shape[1] else float("nan")
            xy = (j - 0.5, i - 0.5)
            if not math.isfinite(value):
                ax.add_patch(Rectangle(xy, 1, 1, facecolor=MISSING_COLOR, edgecolor="#bbbbbb", hatch="..", lw=0.5))
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=size, color="#666666")
                continue
            color = cmap(norm(value))
            ax.add_patch(Rectangle(xy, 1, 1, facecolor=color, edgecolor="white", lw=1.0))
            text = f"{value:.3f}" if abs(value) < 100 else f"{value:.4g}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=size,
                color=_text_color(color),
                weight="bold" if instruction == task else "normal",
            )
            if instruction == task:
                ax.add_patch(Rectangle(xy, 1, 1, fill=False, edgecolor="black", lw=2.0))
    ax.set_xticks(range(n_cols), [task_labels.get(t, f"task {t}") for t in tasks], fontsize=9)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("evaluated on data of task", fontsize=10)
    ax.set_yticks(
        range(n_rows), [f"instruction of\n{task_labels.get(t, f'task {t}')}" for t in instructions], fontsize=9
    )
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=ax,
        orientation="horizontal",
        location="bottom",
        fraction=0.07,
        pad=0.03,
        aspect=40,
    )
    bar.set_label("action MSE (lower is better; boxed = matching instruction)", fontsize=8.5)
    bar.ax.tick_params(labelsize=8)
    _plain_colorbar_labels(bar)
    title = "Instruction x task action MSE"
    if isinstance(margin, (int, float)):
        title += f" (margin {margin:.4g})"
    fig.suptitle(title, fontsize=12, weight="bold")
    _save(fig, path)
