"""Runs every check on one dataset dir (``check_dataset``) and the fps check across datasets (``cross_check``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from kuavo_train.data.check.layout import (
    check_expectations,
    check_extras,
    check_tasks,
    read_episodes,
    read_info,
    summarize_features,
)
from kuavo_train.data.check.messages import listing, num
from kuavo_train.data.check.parquet import scan_data_files
from kuavo_train.data.check.report import DatasetReport
from kuavo_train.data.check.video import check_first_frames, check_videos


def check_dataset(
    root: str | Path,
    *,
    expected_state_dim: int | None = None,
    expected_action_dim: int | None = None,
    expected_cameras: Sequence[str] | None = None,
    expected_fps: float | None = None,
    instruction: str | None = None,
) -> DatasetReport:
    """Inspect one dataset dir; raise ``KuavoError`` for fatal defects, collect the rest in ``problems``."""
    info = read_info(root)
    report = DatasetReport(
        root=info.root,
        version=info.version,
        fps=info.fps,
        episodes=info.total_episodes,
        frames=info.total_frames,
        instruction=instruction,
    )
    info_json = str(info.root / "meta" / "info.json")
    summarize_features(info, report, info_json)
    check_expectations(info, report, info_json, expected_state_dim, expected_action_dim, expected_cameras, expected_fps)
    episodes = read_episodes(info, report)
    check_tasks(report, episodes, instruction)
    scan_data_files(info, report, episodes)
    check_videos(info, report, episodes)
    check_first_frames(info, report)
    check_extras(info, report)
    return report


def check_datasets(
    roots: Iterable[str | Path],
    *,
    expected_state_dim: int | None = None,
    expected_action_dim: int | None = None,
    expected_cameras: Sequence[str] | None = None,
    expected_fps: float | None = None,
    instruction: str | None = None,
) -> list[DatasetReport]:
    """``check_dataset`` on each root, plus checks across them (one fps for all datasets)."""
    reports = [
        check_dataset(
            root,
            expected_state_dim=expected_state_dim,
            expected_action_dim=expected_action_dim,
            expected_cameras=expected_cameras,
            expected_fps=expected_fps,
            instruction=instruction,
        )
        for root in roots
    ]
    cross_check(reports)
    return reports


def cross_check(reports: Sequence[DatasetReport]) -> None:
    """Add to ``reports`` the problems that only show across datasets: they must share one fps."""
    if len(reports) < 2:
        return
    counts = Counter(r.fps for r in reports)
    # The most common fps is the reference; on a tie, the one of the first dataset.
    reference = max(counts, key=lambda fps: (counts[fps], -[r.fps for r in reports].index(fps)))
    if len(counts) == 1:
        return
    agreeing = [str(r.root) for r in reports if r.fps == reference]
    for r in reports:
        if r.fps != reference:
            r.problems.append(
                f"{r.root / 'meta' / 'info.json'}: fps {num(r.fps)} differs from fps {num(reference)} of "
                f"{listing(agreeing)}; all datasets of a curriculum must share one fps - re-export this one at "
                f"{num(reference)} fps"
            )
