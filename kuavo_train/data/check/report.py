"""What a check found about one dataset (``DatasetReport``) and its readable multi-line summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kuavo_train.data.check.messages import num, opt, quote


@dataclass
class FeatureSummary:
    key: str
    dtype: str
    shape: tuple[int, ...]


@dataclass
class CameraSummary:
    key: str
    storage: str  # "image" (PNG bytes inside the parquet files) or "video" (mp4 files)
    height: int | None
    width: int | None
    codec: str | None = None


@dataclass
class LengthStats:
    min: int
    mean: float
    max: int


@dataclass
class DatasetReport:
    """Everything ``check_dataset`` found out about one dataset dir."""

    root: Path
    version: str
    fps: float
    episodes: int  # as declared in meta/info.json
    frames: int  # as declared in meta/info.json
    features: dict[str, FeatureSummary] = field(default_factory=dict)
    cameras: list[CameraSummary] = field(default_factory=list)
    state_dim: int | None = None
    action_dim: int | None = None
    nan_counts: dict[str, int] = field(default_factory=dict)  # over every readable data file
    inf_counts: dict[str, int] = field(default_factory=dict)
    episode_lengths: LengthStats | None = None
    frames_read: int = 0  # rows found in the readable data files
    data_files: int = 0
    unreadable_files: list[str] = field(default_factory=list)
    dataset_tasks: dict[str, int] = field(default_factory=dict)  # task string -> number of episodes
    instruction: str | None = None
    depth_keys: list[str] = field(default_factory=list)
    leftover_images: bool = False
    label: str | None = None  # e.g. "task 1 (moving_grasp)" when checked from a config
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def storage(self) -> str:
        kinds = sorted({c.storage for c in self.cameras})
        return "+".join(kinds) if kinds else "none"


def format_report(report: DatasetReport) -> str:
    """A readable multi-line summary of one report."""
    title = f"{report.label}: {report.root}" if report.label else str(report.root)
    lines = [
        f"Dataset {title}",
        f"  format: LeRobot {report.version}, {num(report.fps)} fps",
        f"  episodes: {report.episodes}, frames: {report.frames}{_length_text(report)}",
        f"  state dim: {opt(report.state_dim)}, action dim: {opt(report.action_dim)}",
        *_camera_lines(report),
        *_feature_lines(report),
        _values_line(report),
        *_task_lines(report),
        *_finding_lines(report),
    ]
    return "\n".join(lines)


def _length_text(report: DatasetReport) -> str:
    lengths = report.episode_lengths
    if not lengths:
        return ""
    return f", episode length min/mean/max {lengths.min}/{lengths.mean:.1f}/{lengths.max} frames"


def _camera_lines(report: DatasetReport) -> list[str]:
    if not report.cameras:
        return ["  cameras: none"]
    lines = [f"  cameras ({len(report.cameras)}, stored as {report.storage}):"]
    width = max(len(c.key) for c in report.cameras)
    for cam in report.cameras:
        size = f"{cam.height}x{cam.width}" if cam.height is not None else "?x?"
        codec = f", codec {cam.codec}" if cam.codec else ""
        lines.append(f"    {cam.key:<{width}}  {cam.storage}  {size}{codec}")
    return lines


def _feature_lines(report: DatasetReport) -> list[str]:
    lines = ["  features:"]
    width = max((len(k) for k in report.features), default=0)
    for key, feature in report.features.items():
        dropped = "  (depth, dropped by default)" if key in report.depth_keys else ""
        lines.append(f"    {key:<{width}}  {feature.dtype:<8} {list(feature.shape)}{dropped}")
    return lines


def _values_line(report: DatasetReport) -> str:
    values = ", ".join(
        f"{k} {report.nan_counts.get(k, 0)} NaN / {report.inf_counts.get(k, 0)} inf" for k in report.nan_counts
    )
    checked = f"{report.data_files - len(report.unreadable_files)}/{report.data_files} data files read"
    return f"  values: {values or 'n/a'} ({checked})"


def _task_lines(report: DatasetReport) -> list[str]:
    lines = []
    if report.dataset_tasks:
        lines.append("  task strings in the dataset:")
        lines.extend(f"    {quote(task)} ({count} episode(s))" for task, count in report.dataset_tasks.items())
    if report.instruction is not None:
        lines.append(f"  training instruction: {quote(report.instruction)}")
    return lines


def _finding_lines(report: DatasetReport) -> list[str]:
    lines = []
    if report.notes:
        lines.append("  notes:")
        lines.extend(f"    - {note}" for note in report.notes)
    if report.problems:
        lines.append(f"  problems ({len(report.problems)}):")
        lines.extend(f"    - {problem}" for problem in report.problems)
    lines.append("  result: OK" if report.ok else f"  result: {len(report.problems)} problem(s)")
    return lines
