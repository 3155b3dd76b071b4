"""Checks of the parquet data files: readable, columns present, vector sizes, NaN/inf/null values, lengths,
timestamps."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kuavo_train.data.check.layout import VECTOR_KEYS, Episode, episode_of_v21_file
from kuavo_train.data.check.messages import listing, unreadable
from kuavo_train.data.check.report import DatasetReport, LengthStats
from kuavo_train.data.source import SourceInfo

_LIGHT_COLUMNS = ("episode_index", "frame_index", "timestamp")
# lerobot's default `tolerance_s`: video frames are looked up by the data's timestamps within it.
_TIMESTAMP_TOLERANCE_S = 1e-4


@dataclass
class _Totals:
    """What the scan accumulates over all data files."""

    nan: dict[str, int]
    inf: dict[str, int]
    rows_per_episode: Counter[int] = field(default_factory=Counter)
    bad_timestamps: list[tuple[str, float]] = field(default_factory=list)  # (file, largest deviation in s)


def scan_data_files(info: SourceInfo, report: DatasetReport, episodes: dict[int, Episode]) -> None:
    """Read the small columns (state, action, indices, timestamps) of every data file and check them."""
    report.data_files = len(info.data_files)
    nan = {k: 0 for k in VECTOR_KEYS if k in report.features}
    totals = _Totals(nan=nan, inf=dict(nan))
    for path in info.data_files:
        _scan_file(info, report, episodes, path, totals)
    report.nan_counts, report.inf_counts = totals.nan, totals.inf
    _check_episode_lengths(info, report, episodes, totals.rows_per_episode)
    _report_timestamps(info, report, totals.bad_timestamps)


def _scan_file(
    info: SourceInfo, report: DatasetReport, episodes: dict[int, Episode], path: Path, totals: _Totals
) -> None:
    import pyarrow.parquet as pq

    rel = str(path)
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        table = parquet.read(columns=[c for c in (*VECTOR_KEYS, *_LIGHT_COLUMNS) if c in names])
    except Exception as exc:  # ArrowInvalid (bad magic/footer), OSError (truncated), ...
        report.unreadable_files.append(rel)
        fix = "re-export this episode" if info.version == "v2.1" else "re-export the dataset"
        report.problems.append(unreadable(path, exc, f"{fix} or restore the file from the original export"))
        return
    report.frames_read += table.num_rows
    _check_columns_present(report, rel, names, totals.nan)
    episode_col = _row_episodes(info, path, table)
    if info.version == "v2.1":
        _check_v21_file_length(report, episodes, path, table.num_rows)
    if episode_col is not None:
        totals.rows_per_episode.update(episode_col.tolist())
    for key in totals.nan:
        if key in names:
            _check_vector_column(report, rel, key, table.column(key), episode_col, totals)
    dev = _timestamp_deviation(table, info.fps)
    if dev is not None and dev > _TIMESTAMP_TOLERANCE_S:
        totals.bad_timestamps.append((rel, dev))


def _check_columns_present(report: DatasetReport, rel: str, names: list[str], vector_keys) -> None:
    missing = [k for k in vector_keys if k not in names]
    missing += [c.key for c in report.cameras if c.storage == "image" and c.key not in names]
    if missing:
        report.problems.append(f"{rel}: column(s) {', '.join(missing)} missing; re-export this episode")


def _row_episodes(info: SourceInfo, path: Path, table) -> np.ndarray | None:
    """The episode index of each row (a v2.1 file without the column: the episode its name gives, else -1)."""
    episode_col = _int_column(table, "episode_index")
    if info.version == "v2.1" and episode_col is None:
        file_episode = episode_of_v21_file(path)
        episode_col = np.full(table.num_rows, file_episode if file_episode is not None else -1)
    return episode_col


def _check_v21_file_length(report: DatasetReport, episodes: dict[int, Episode], path: Path, rows: int) -> None:
    file_episode = episode_of_v21_file(path)
    declared = episodes.get(file_episode) if file_episode is not None else None
    if declared is not None and declared.length is not None and declared.length != rows:
        report.problems.append(
            f"{path}: holds {rows} frames but meta/episodes.jsonl says length {declared.length}; re-export this episode"
        )


def _check_vector_column(report: DatasetReport, rel: str, key: str, column, episode_col, totals: _Totals) -> None:
    """Row sizes against meta/info.json, nulls, and NaN/inf values (counted into ``totals``) of state or action."""
    values, lengths, nulls = _vector_column(column)
    want = report.features[key].shape[0] if report.features[key].shape else None
    if want is not None and lengths and lengths != {want}:
        report.problems.append(
            f"{rel}: {key} rows have {listing(sorted(lengths))} values but meta/info.json declares {want}; "
            "the export is inconsistent - re-export the dataset"
        )
    if nulls:
        report.problems.append(
            f"{rel}: {key} has {nulls} missing (null) value(s); re-export or drop the affected episode(s)"
        )
    bad_nan, bad_inf = np.isnan(values), np.isinf(values)
    totals.nan[key] += int(bad_nan.sum())
    totals.inf[key] += int(bad_inf.sum())
    for label, mask in (("NaN", bad_nan), ("inf", bad_inf)):
        count = int(mask.sum())
        if count:
            where = _episodes_with(mask, lengths, episode_col)
            report.problems.append(
                f"{rel}: {key} holds {count} {label} value(s){where}; fix the recording or leave the episode "
                "out (task.data.episodes_to_use)"
            )


def _report_timestamps(info: SourceInfo, report: DatasetReport, bad_timestamps: list[tuple[str, float]]) -> None:
    """One line for timestamps off frame_index/fps: a problem with videos (frames are looked up by them), else a
    note."""
    if not bad_timestamps:
        return
    rel, dev = max(bad_timestamps, key=lambda item: item[1])
    message = (
        f"{rel}: timestamps differ from frame_index/fps by up to {dev:.4g} s "
        f"({len(bad_timestamps)} file(s)); check the fps in meta/info.json"
    )
    if info.video_keys:
        report.problems.append(
            message + " - lerobot looks video frames up by these timestamps (tolerance 1e-4 s), re-export the dataset"
        )
    else:
        report.notes.append(message)


def _check_episode_lengths(info, report, episodes: dict[int, Episode], rows: Counter[int]) -> None:
    """v3.0 episode lengths against the rows found; the length stats; total_frames against the rows read."""
    if info.version == "v3.0":
        for index, episode in sorted(episodes.items()):
            if episode.length is not None and index in rows and rows[index] != episode.length:
                report.problems.append(
                    f"{info.root / 'data'}: episode {index} has {rows[index]} frames but meta/episodes says "
                    f"{episode.length}; re-export the dataset"
                )
    lengths = [e.length for e in episodes.values() if e.length is not None] or [n for n in rows.values() if n > 0]
    if lengths:
        report.episode_lengths = LengthStats(min(lengths), float(np.mean(lengths)), max(lengths))
    if not report.unreadable_files and report.frames_read != info.total_frames:
        report.problems.append(
            f"{info.root / 'meta' / 'info.json'}: total_frames={info.total_frames} but the data files hold "
            f"{report.frames_read} frames; the export is inconsistent - re-export the dataset"
        )


def _vector_column(column) -> tuple[np.ndarray, set[int], int]:
    """(float values as a flat array, set of row lengths, number of nulls) of a list or scalar column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if column.num_chunks else pa.array([], type=column.type)
    nulls = arr.null_count
    if pa.types.is_fixed_size_list(arr.type):
        lengths = {arr.type.list_size} if len(arr) else set()
        flat = arr.flatten()
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        lens = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        lengths = {int(v) for v in np.unique(lens[~np.isnan(lens)] if lens.dtype.kind == "f" else lens)}
        flat = arr.flatten()
    else:
        lengths = {1} if len(arr) else set()
        flat = arr
    nulls += flat.null_count
    if flat.null_count:
        flat = pc.drop_null(flat)
    try:
        values = flat.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    except (TypeError, ValueError, pa.ArrowException):
        values = np.zeros(0)
    return values, lengths, nulls


def _episodes_with(mask: np.ndarray, lengths: set[int], episode_col: np.ndarray | None) -> str:
    """' (episode 3, frame 7)' / ' (episodes 1, 4)' for the rows holding a True of the flat ``mask``."""
    if episode_col is None or len(lengths) != 1:
        return ""
    dim = next(iter(lengths))
    if dim <= 0 or mask.size != dim * len(episode_col):
        return ""
    bad_rows = np.nonzero(mask.reshape(len(episode_col), dim).any(axis=1))[0]
    bad_episodes = sorted({int(e) for e in episode_col[bad_rows]})
    if len(bad_episodes) == 1:
        first = int(bad_rows[0]) - int(np.nonzero(episode_col == bad_episodes[0])[0][0])
        return f" (episode {bad_episodes[0]}, first at frame {first})"
    return f" (episodes {listing(bad_episodes)})"


def _timestamp_deviation(table, fps: float) -> float | None:
    """Largest |timestamp - frame_index/fps| in seconds, each episode taken from its own start; None if not
    computable."""
    if fps <= 0 or not {"timestamp", "frame_index"} <= set(table.column_names) or table.num_rows == 0:
        return None
    try:
        ts = table.column("timestamp").to_numpy().astype(np.float64)
        fi = table.column("frame_index").to_numpy().astype(np.float64)
    except Exception:
        return None
    episode = _int_column(table, "episode_index")
    # Kuavo exports start every episode at timestamp 0; a v3.0 file may hold several episodes.
    if episode is None:
        episode = np.zeros(len(ts), dtype=np.int64)
    dev = 0.0
    for value in np.unique(episode):
        sel = episode == value
        offset = ts[sel][0] - fi[sel][0] / fps
        dev = max(dev, float(np.max(np.abs(ts[sel] - fi[sel] / fps - offset))))
    return dev


def _int_column(table, name: str) -> np.ndarray | None:
    if name not in table.column_names:
        return None
    try:
        return table.column(name).to_numpy().astype(np.int64)
    except Exception:
        return None
