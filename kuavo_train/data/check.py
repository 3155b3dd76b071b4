"""`kuavo-train check-data`: inspect LeRobot dataset dirs (v2.1 Kuavo exports or v3.0) and report problems.

What is checked, without ever writing to the dataset:

* fatal defects (missing dir, no ``meta/info.json``, unsupported format version, no episodes) raise a
  one-line :class:`KuavoError` (from :func:`~kuavo_train.data.source.read_source_info`);
* per-file defects are collected as ``problems`` (one line each, naming the file and the fix):
  missing required camera, state/action size other than expected, unreadable (corrupt/truncated)
  parquet files, NaN/inf values in state/action, fps other than expected, missing video files,
  frame counts that disagree with the metadata;
* harmless findings are ``notes``: depth columns (dropped by default), a leftover ``images/`` folder,
  the dataset's own task strings differing from the training instruction, ...

Only the small columns of the data files are read (state, action, indices, timestamps), plus the first
frame of each camera, so checking hundreds of real episodes stays fast.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from kuavo_train.data.constants import ACTION, CAMERA_PREFIX, STATE
from kuavo_train.data.source import DEPTH_PREFIX, SourceInfo, read_source_info
from kuavo_train.errors import KuavoError

__all__ = [
    "CameraSummary",
    "DatasetReport",
    "FeatureSummary",
    "check_data_main",
    "check_dataset",
    "check_datasets",
    "cross_check",
    "format_report",
]

VECTOR_KEYS = (STATE, ACTION)
_LIGHT_COLUMNS = ("episode_index", "frame_index", "timestamp")
_DEFAULT_V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
_DEFAULT_V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
# lerobot's default `tolerance_s`: video frames are looked up by the data's timestamps within it.
_TIMESTAMP_TOLERANCE_S = 1e-4
_MAX_LISTED = 3  # how many episodes/files a one-line message names before "and N more"


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


# --------------------------------------------------------------------------------------------
# Checking one dataset
# --------------------------------------------------------------------------------------------


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
    info = _read_info(root)
    report = DatasetReport(
        root=info.root,
        version=info.version,
        fps=info.fps,
        episodes=info.total_episodes,
        frames=info.total_frames,
        instruction=instruction,
    )
    info_json = str(info.root / "meta" / "info.json")
    _summarize_features(info, report, info_json)
    _check_expectations(info, report, info_json, expected_state_dim, expected_action_dim, expected_cameras, expected_fps)

    if info.version == "v2.1":
        episodes = _v21_episodes(info, report)
    else:
        episodes = _v30_episodes(info, report)
    _check_tasks(report, episodes, instruction)
    _scan_data_files(info, report, episodes)
    _check_videos(info, report, episodes)
    _check_first_frames(info, report)
    _check_extras(info, report)
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
                f"{r.root / 'meta' / 'info.json'}: fps {_num(r.fps)} differs from fps {_num(reference)} of "
                f"{_listing(agreeing)}; all datasets of a curriculum must share one fps - re-export this one at "
                f"{_num(reference)} fps"
            )


def _read_info(root: str | Path) -> SourceInfo:
    try:
        info = read_source_info(root)
    except KuavoError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # read_source_info lets some malformed-metadata errors through; keep them one line.
        raise KuavoError(
            f"{Path(root).expanduser() / 'meta'}: malformed metadata ({type(exc).__name__}: {exc}); "
            "restore meta/ from the original export or re-export the dataset"
        ) from exc
    except OSError as exc:
        raise KuavoError(f"{Path(root).expanduser()}: cannot read the dataset metadata ({exc})") from exc
    info_json = info.root / "meta" / "info.json"
    if not isinstance(info.features, dict):
        raise KuavoError(f"{info_json}: 'features' must be a mapping of feature name -> spec; restore it from the export")
    for key, feature in info.features.items():
        if not isinstance(feature, dict) or "dtype" not in feature or not isinstance(feature.get("shape"), list):
            raise KuavoError(
                f"{info_json}: feature '{key}' needs a 'dtype' and a 'shape' list; restore meta/info.json from the export"
            )
    return info


def _summarize_features(info: SourceInfo, report: DatasetReport, info_json: str) -> None:
    for key, feature in info.features.items():
        shape = tuple(int(v) for v in feature.get("shape") or ())
        report.features[key] = FeatureSummary(key, str(feature["dtype"]), shape)
    for key in info.camera_keys:
        feature = info.features[key]
        h, w = _declared_hw(feature)
        codec = (feature.get("info") or {}).get("video.codec") if feature["dtype"] == "video" else None
        report.cameras.append(CameraSummary(key, feature["dtype"], h, w, codec))
    report.depth_keys = [k for k in info.features if k.startswith(DEPTH_PREFIX)]
    for key in VECTOR_KEYS:
        summary = report.features.get(key)
        if summary is None:
            report.problems.append(
                f"{info_json}: feature '{key}' is missing; SmolVLA needs {STATE} and {ACTION} - re-export the dataset with them"
            )
        elif len(summary.shape) != 1:
            report.problems.append(
                f"{info_json}: feature '{key}' has shape {list(summary.shape)}; it must be a 1-D vector - re-export the dataset"
            )
    report.state_dim = _dim(report, STATE)
    report.action_dim = _dim(report, ACTION)


def _dim(report: DatasetReport, key: str) -> int | None:
    summary = report.features.get(key)
    return summary.shape[0] if summary is not None and len(summary.shape) == 1 else None


def _declared_hw(feature: dict) -> tuple[int | None, int | None]:
    extra = feature.get("info") or {}
    if "video.height" in extra and "video.width" in extra:
        return int(extra["video.height"]), int(extra["video.width"])
    shape = [int(v) for v in feature.get("shape") or ()]
    if len(shape) != 3:
        return None, None
    names = feature.get("names")
    if isinstance(names, list) and "height" in names and "width" in names:
        return shape[names.index("height")], shape[names.index("width")]
    if shape[0] in (1, 3, 4):  # channels first
        return shape[1], shape[2]
    return shape[0], shape[1]


def _check_expectations(info, report, info_json, state_dim, action_dim, cameras, fps) -> None:
    for key, have, want, option in (
        (STATE, report.state_dim, state_dim, "--state-dim / task.data.state_dim"),
        (ACTION, report.action_dim, action_dim, "--action-dim / task.data.action_dim"),
    ):
        if want is not None and have is not None and int(want) != have:
            report.problems.append(
                f"{info_json}: {key} has {have} dims but {int(want)} are expected ({option}); point the task at the "
                f"right dataset or set the expected size to {have}"
            )
    if not report.cameras:
        report.problems.append(
            f"{info_json}: no camera features ({CAMERA_PREFIX}*, dtype image or video); SmolVLA needs images - "
            "re-export the dataset with its cameras"
        )
    if cameras:
        present = {c.key for c in report.cameras}
        for camera in cameras:
            if camera not in present:
                report.problems.append(
                    f"{info_json}: required camera '{camera}' is missing (the dataset has: "
                    f"{', '.join(sorted(present)) or 'none'}); re-export with that camera or remove it from "
                    "task.data.cameras / --cameras"
                )
    if fps is not None and not math.isclose(float(fps), info.fps, rel_tol=0, abs_tol=1e-6):
        report.problems.append(
            f"{info_json}: fps is {_num(info.fps)} but {_num(fps)} is expected; re-export the dataset at "
            f"{_num(fps)} fps (or check --fps)"
        )
    for cam in report.cameras:
        video_fps = (info.features[cam.key].get("info") or {}).get("video.fps")
        if cam.storage == "video" and video_fps is not None and not math.isclose(float(video_fps), info.fps, abs_tol=1e-6):
            report.problems.append(
                f"{info_json}: {cam.key} declares video.fps {_num(video_fps)} but the dataset fps is {_num(info.fps)}; "
                "re-export the videos at the dataset fps"
            )


# --------------------------------------------------------------------------------------------
# Episode metadata
# --------------------------------------------------------------------------------------------


@dataclass
class _Episode:
    index: int
    length: int | None
    tasks: list[str]
    # v3.0: (chunk, file) of each video key; v2.1: unused (one file per episode).
    videos: dict[str, tuple[int, int]] = field(default_factory=dict)


def _v21_episodes(info: SourceInfo, report: DatasetReport) -> dict[int, _Episode]:
    out = {}
    for row in info.episodes:
        index = int(row["episode_index"])
        tasks = row.get("tasks") or []
        out[index] = _Episode(index, _int_or_none(row.get("length")), [str(t) for t in tasks])
    episodes_jsonl = info.root / "meta" / "episodes.jsonl"
    if len(out) != info.total_episodes:
        report.problems.append(
            f"{episodes_jsonl}: lists {len(out)} episodes but meta/info.json says total_episodes={info.total_episodes}; "
            "the export is incomplete - re-export it"
        )
    strays = [p for p in info.data_files if _episode_of_v21_file(p) not in out]
    if strays:
        report.problems.append(
            f"{_listing([str(p) for p in strays])}: data file(s) of episode(s) that {episodes_jsonl} does not list; "
            "the export is inconsistent - re-export it (or restore the file names)"
        )
    return out


def _v30_episodes(info: SourceInfo, report: DatasetReport) -> dict[int, _Episode]:
    import pyarrow.parquet as pq

    files = sorted((info.root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        report.problems.append(
            f"{info.root / 'meta' / 'episodes'}: no episode metadata files; the v3.0 export is incomplete - re-export it"
        )
        return {}
    out: dict[int, _Episode] = {}
    for path in files:
        try:
            schema = pq.read_schema(path)
            video_cols = [c for c in schema.names if c.startswith("videos/") and c.endswith(("/chunk_index", "/file_index"))]
            columns = [c for c in ("episode_index", "length", "tasks") if c in schema.names] + video_cols
            rows = pq.read_table(path, columns=columns).to_pylist()
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError/... for damaged files
            report.problems.append(_unreadable(info, path, exc, "restore meta/episodes from the original export"))
            continue
        for row in rows:
            if row.get("episode_index") is None:
                continue
            index = int(row["episode_index"])
            episode = _Episode(index, _int_or_none(row.get("length")), [str(t) for t in row.get("tasks") or []])
            for key in info.video_keys:
                chunk, file = row.get(f"videos/{key}/chunk_index"), row.get(f"videos/{key}/file_index")
                if chunk is not None and file is not None:
                    episode.videos[key] = (int(chunk), int(file))
            out[index] = episode
    if len(out) != info.total_episodes:
        report.problems.append(
            f"{info.root / 'meta' / 'episodes'}: lists {len(out)} episodes but meta/info.json says "
            f"total_episodes={info.total_episodes}; the export is incomplete - re-export it"
        )
    return out


def _check_tasks(report: DatasetReport, episodes: dict[int, _Episode], instruction: str | None) -> None:
    counts: Counter[str] = Counter()
    for episode in episodes.values():
        for task in episode.tasks or ["<none>"]:
            counts[task] += 1
    report.dataset_tasks = dict(counts.most_common())
    known = [t for t in counts if t != "<none>"]
    if len(known) > 1:
        report.notes.append(f"the dataset holds {len(known)} different task strings (listed above)")
    if instruction is not None:
        wanted = instruction.strip()
        differing = [t for t in known if t.strip() != wanted]
        if differing:
            n = sum(counts[t] for t in differing)
            report.notes.append(
                f"the dataset's own task string {_quote(differing[0])}"
                f"{f' (and {len(differing) - 1} more)' if len(differing) > 1 else ''} ({n} episode(s)) differs from "
                f"the instruction {_quote(wanted)}; training uses the config's language_instruction, not the dataset's"
            )


# --------------------------------------------------------------------------------------------
# Data files
# --------------------------------------------------------------------------------------------


def _scan_data_files(info: SourceInfo, report: DatasetReport, episodes: dict[int, _Episode]) -> None:
    import pyarrow.parquet as pq

    report.data_files = len(info.data_files)
    nan = {k: 0 for k in VECTOR_KEYS if k in report.features}
    inf = dict(nan)
    rows_per_episode: Counter[int] = Counter()
    bad_timestamps: list[tuple[str, float]] = []
    for path in info.data_files:
        rel = str(path)
        try:
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            table = parquet.read(columns=[c for c in (*VECTOR_KEYS, *_LIGHT_COLUMNS) if c in names])
        except Exception as exc:  # ArrowInvalid (bad magic/footer), OSError (truncated), ...
            report.unreadable_files.append(rel)
            fix = "re-export this episode" if info.version == "v2.1" else "re-export the dataset"
            report.problems.append(_unreadable(info, path, exc, f"{fix} or restore the file from the original export"))
            continue
        report.frames_read += table.num_rows
        missing = [k for k in nan if k not in names]
        missing += [c.key for c in report.cameras if c.storage == "image" and c.key not in names]
        if missing:
            report.problems.append(f"{rel}: column(s) {', '.join(missing)} missing; re-export this episode")
        episode_col = _int_column(table, "episode_index")
        if info.version == "v2.1":
            file_episode = _episode_of_v21_file(path)
            if episode_col is None:
                episode_col = np.full(table.num_rows, file_episode if file_episode is not None else -1)
            declared = episodes.get(file_episode) if file_episode is not None else None
            if declared is not None and declared.length is not None and declared.length != table.num_rows:
                report.problems.append(
                    f"{rel}: holds {table.num_rows} frames but meta/episodes.jsonl says length {declared.length}; "
                    "re-export this episode"
                )
        if episode_col is not None:
            rows_per_episode.update(episode_col.tolist())
        for key in nan:
            if key not in names:
                continue
            values, lengths, nulls = _vector_column(table.column(key))
            want = report.features[key].shape[0] if report.features[key].shape else None
            if want is not None and lengths and lengths != {want}:
                report.problems.append(
                    f"{rel}: {key} rows have {_listing(sorted(lengths))} values but meta/info.json declares {want}; "
                    "the export is inconsistent - re-export the dataset"
                )
            if nulls:
                report.problems.append(f"{rel}: {key} has {nulls} missing (null) value(s); re-export or drop the affected episode(s)")
            bad_nan, bad_inf = np.isnan(values), np.isinf(values)
            nan[key] += int(bad_nan.sum())
            inf[key] += int(bad_inf.sum())
            for label, mask in (("NaN", bad_nan), ("inf", bad_inf)):
                count = int(mask.sum())
                if count:
                    where = _episodes_with(mask, lengths, episode_col)
                    report.problems.append(
                        f"{rel}: {key} holds {count} {label} value(s){where}; fix the recording or leave the episode "
                        "out (task.data.episodes_to_use)"
                    )
        dev = _timestamp_deviation(table, info.fps)
        if dev is not None and dev > _TIMESTAMP_TOLERANCE_S:
            bad_timestamps.append((rel, dev))
    report.nan_counts, report.inf_counts = nan, inf
    _episode_length_checks(info, report, episodes, rows_per_episode)
    if bad_timestamps:
        rel, dev = max(bad_timestamps, key=lambda item: item[1])
        message = (
            f"{rel}: timestamps differ from frame_index/fps by up to {dev:.4g} s "
            f"({len(bad_timestamps)} file(s)); check the fps in meta/info.json"
        )
        if info.video_keys:
            report.problems.append(message + " - lerobot looks video frames up by these timestamps (tolerance 1e-4 s), re-export the dataset")
        else:
            report.notes.append(message)


def _episode_length_checks(info, report, episodes: dict[int, _Episode], rows: Counter[int]) -> None:
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
    return f" (episodes {_listing(bad_episodes)})"


def _timestamp_deviation(table, fps: float) -> float | None:
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


def _episode_of_v21_file(path: Path) -> int | None:
    match = re.fullmatch(r"episode_(\d+)\.parquet", path.name)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------------------------
# Videos, first frames, leftovers
# --------------------------------------------------------------------------------------------


def _video_paths(info: SourceInfo, episodes: dict[int, _Episode]) -> dict[str, dict[Path, list[int]]]:
    """Per video key: expected video file -> the episodes stored in it."""
    out: dict[str, dict[Path, list[int]]] = {}
    if info.version == "v2.1":
        template = info.raw_info.get("video_path") or _DEFAULT_V21_VIDEO_PATH
        chunks_size = int(info.raw_info.get("chunks_size") or 1000)
        for key in info.video_keys:
            files = out.setdefault(key, {})
            for index in sorted(episodes) or range(info.total_episodes):
                fields_ = {"episode_chunk": index // chunks_size, "video_key": key, "episode_index": index}
                try:
                    rel = template.format(**fields_)
                except (KeyError, IndexError, ValueError):
                    rel = _DEFAULT_V21_VIDEO_PATH.format(**fields_)
                files.setdefault(info.root / rel, []).append(index)
    else:
        template = info.raw_info.get("video_path") or _DEFAULT_V30_VIDEO_PATH
        for key in info.video_keys:
            files = out.setdefault(key, {})
            for index, episode in sorted(episodes.items()):
                if key not in episode.videos:
                    continue
                chunk, file = episode.videos[key]
                fields_ = {"video_key": key, "chunk_index": chunk, "file_index": file}
                try:
                    rel = template.format(**fields_)
                except (KeyError, IndexError, ValueError):
                    rel = _DEFAULT_V30_VIDEO_PATH.format(**fields_)
                files.setdefault(info.root / rel, []).append(index)
    return out


def _check_videos(info: SourceInfo, report: DatasetReport, episodes: dict[int, _Episode]) -> None:
    for key, files in _video_paths(info, episodes).items():
        if not files:
            report.problems.append(
                f"{info.root / 'meta' / 'episodes'}: no video file is listed for {key}; re-export the dataset"
            )
            continue
        missing = [(p, eps) for p, eps in files.items() if not p.is_file()]
        empty = [p for p in files if p.is_file() and p.stat().st_size == 0]
        if missing:
            path, eps = missing[0]
            more = f" (and {len(missing) - 1} more file(s))" if len(missing) > 1 else ""
            report.problems.append(
                f"{path}: video file of {key} for episode(s) {_listing(eps)} is missing{more}; copy the "
                "videos/ folder of the export next to data/ or re-export the dataset"
            )
        for path in empty:
            report.problems.append(f"{path}: video file is empty; re-export the videos of this episode")
        present = [p for p in files if p.is_file() and p.stat().st_size > 0]
        if present:
            _probe_video(info, report, key, present[0])


def _probe_video(info: SourceInfo, report: DatasetReport, key: str, path: Path) -> None:
    camera = next(c for c in report.cameras if c.key == key)
    try:
        import av

        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            height, width = stream.codec_context.height, stream.codec_context.width
            codec = stream.codec_context.name
    except Exception as exc:
        report.problems.append(
            f"{path}: cannot be opened as a video ({type(exc).__name__}: {_first_line(exc)}); "
            "re-export the videos of this episode"
        )
        return
    camera.codec = camera.codec or codec
    if camera.height is None:
        camera.height, camera.width = height, width
    elif (height, width) != (camera.height, camera.width):
        report.notes.append(
            f"{path}: video frames are {height}x{width} but meta/info.json declares "
            f"{camera.height}x{camera.width} for {key} (images are resized for the policy anyway)"
        )


def _check_first_frames(info: SourceInfo, report: DatasetReport) -> None:
    """Decode the first stored image of each image-mode camera (catches unreadable PNG/JPEG bytes)."""
    image_cams = [c for c in report.cameras if c.storage == "image"]
    readable = [p for p in info.data_files if str(p) not in report.unreadable_files]
    if not image_cams or not readable:
        return
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    path = readable[0]
    for camera in image_cams:
        try:
            parquet = pq.ParquetFile(path)
            if camera.key not in parquet.schema_arrow.names:
                continue  # reported with the data files
            batch = next(parquet.iter_batches(batch_size=1, columns=[camera.key]), None)
            cell = batch.column(0)[0].as_py() if batch is not None and batch.num_rows else None
        except Exception as exc:
            report.problems.append(_unreadable(info, path, exc, "re-export this episode"))
            return
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if data is None:
            where = cell.get("path") if isinstance(cell, dict) else None
            report.notes.append(
                f"{path}: {camera.key} frames hold no image bytes"
                + (f" (only a path: {where})" if where else "")
                + "; lerobot needs the images embedded in the parquet files"
            )
            continue
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                width, height = image.size
        except Exception as exc:
            report.problems.append(
                f"{path}: the first {camera.key} image cannot be decoded ({type(exc).__name__}); "
                "re-export this episode"
            )
            continue
        if camera.height is None:
            camera.height, camera.width = height, width
        elif (height, width) != (camera.height, camera.width):
            report.notes.append(
                f"{path}: {camera.key} images are {height}x{width} but meta/info.json declares "
                f"{camera.height}x{camera.width} (images are resized for the policy anyway)"
            )


def _check_extras(info: SourceInfo, report: DatasetReport) -> None:
    if report.depth_keys:
        report.notes.append(
            f"depth columns {', '.join(report.depth_keys)} are present; they are dropped when the data is loaded "
            "(set data.keep_depth=true to keep them)"
        )
    if (info.root / "images").is_dir():
        report.leftover_images = True
        report.notes.append(
            f"{info.root / 'images'}: leftover image folder of the export; LeRobot does not use it (it is ignored, "
            "you may delete it to save space)"
        )


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def format_report(report: DatasetReport) -> str:
    """A readable multi-line summary of one report."""
    lines = []
    title = f"{report.label}: {report.root}" if report.label else str(report.root)
    lines.append(f"Dataset {title}")
    lines.append(f"  format: LeRobot {report.version}, {_num(report.fps)} fps")
    lengths = report.episode_lengths
    length_text = (
        f", episode length min/mean/max {lengths.min}/{lengths.mean:.1f}/{lengths.max} frames" if lengths else ""
    )
    lines.append(f"  episodes: {report.episodes}, frames: {report.frames}{length_text}")
    lines.append(f"  state dim: {_opt(report.state_dim)}, action dim: {_opt(report.action_dim)}")
    if report.cameras:
        lines.append(f"  cameras ({len(report.cameras)}, stored as {report.storage}):")
        width = max(len(c.key) for c in report.cameras)
        for cam in report.cameras:
            size = f"{cam.height}x{cam.width}" if cam.height is not None else "?x?"
            codec = f", codec {cam.codec}" if cam.codec else ""
            lines.append(f"    {cam.key:<{width}}  {cam.storage}  {size}{codec}")
    else:
        lines.append("  cameras: none")
    lines.append("  features:")
    width = max((len(k) for k in report.features), default=0)
    for key, feature in report.features.items():
        dropped = "  (depth, dropped by default)" if key in report.depth_keys else ""
        lines.append(f"    {key:<{width}}  {feature.dtype:<8} {list(feature.shape)}{dropped}")
    values = ", ".join(
        f"{k} {report.nan_counts.get(k, 0)} NaN / {report.inf_counts.get(k, 0)} inf" for k in report.nan_counts
    )
    checked = f"{report.data_files - len(report.unreadable_files)}/{report.data_files} data files read"
    lines.append(f"  values: {values or 'n/a'} ({checked})")
    if report.dataset_tasks:
        lines.append("  task strings in the dataset:")
        for task, count in report.dataset_tasks.items():
            lines.append(f"    {_quote(task)} ({count} episode(s))")
    if report.instruction is not None:
        lines.append(f"  training instruction: {_quote(report.instruction)}")
    if report.notes:
        lines.append("  notes:")
        lines.extend(f"    - {note}" for note in report.notes)
    if report.problems:
        lines.append(f"  problems ({len(report.problems)}):")
        lines.extend(f"    - {problem}" for problem in report.problems)
    lines.append("  result: OK" if report.ok else f"  result: {len(report.problems)} problem(s)")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str):  # one-line error + exit 2 through the usual KuavoError path
        raise KuavoError(f"{message} (see `kuavo-train check-data --help`)")


def _parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(
        prog="kuavo-train check-data",
        description="Inspect LeRobot dataset dirs (Kuavo v2.1 exports or v3.0) and report problems. "
        "Exit status: 0 no problems, 1 problems found, 2 a dataset could not be checked at all.",
    )
    p.add_argument(
        "roots", nargs="*", metavar="ROOT",
        help="dataset dir(s) to check one by one; KEY=VALUE items are config overrides, and with them (or --config-name) "
             "every task of the curriculum is checked against its task file (e.g. data.roots.weighing=/data/t2)",
    )
    p.add_argument("--state-dim", type=_positive_int, help="expected observation.state size")
    p.add_argument("--action-dim", type=_positive_int, help="expected action size")
    p.add_argument("--cameras", type=_camera_list, help="required cameras, comma separated (e.g. head_cam_h,wrist_cam_l)")
    p.add_argument("--fps", type=_positive_float, help="expected fps")
    p.add_argument("--instruction", help="training instruction to compare with the dataset's task strings")
    p.add_argument("--config-name", help="check every task of this config (default smolvla_sequential_base when overrides are given)")
    p.add_argument("--config-path", help="config dir (default configs/policy)")
    return p


def check_data_main(argv: Sequence[str] | None = None) -> int:
    """`kuavo-train check-data ...`; 0 = no problems, 1 = problems, 2 = a dataset could not be checked."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
        jobs = _jobs(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KuavoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reports, errors = [], 0
    for label, root, expect in jobs:
        try:
            report = check_dataset(root, **expect)
        except KuavoError as exc:
            errors += 1
            print(f"error: {f'{label}: ' if label else ''}{exc}", file=sys.stderr)
            continue
        report.label = label
        reports.append(report)
    cross_check(reports)
    for report in reports:
        print(format_report(report))
        print()
    problems = sum(len(r.problems) for r in reports)
    summary = f"checked {len(reports)} dataset(s): {problems} problem(s)"
    if errors:
        summary += f", {errors} could not be checked (see the error lines)"
    print(summary)
    if errors:
        return 2
    return 1 if problems else 0


def _jobs(args) -> list[tuple[str | None, str, dict[str, Any]]]:
    cli_expect = {
        "expected_state_dim": args.state_dim,
        "expected_action_dim": args.action_dim,
        "expected_cameras": args.cameras,
        "expected_fps": args.fps,
        "instruction": args.instruction,
    }
    jobs: list[tuple[str | None, str, dict[str, Any]]] = []
    overrides = [r for r in args.roots if "=" in r]
    roots = [r for r in args.roots if "=" not in r]
    if args.config_name or args.config_path or overrides:
        jobs.extend(_config_jobs(args, overrides, cli_expect))
    elif not roots:
        raise KuavoError("give at least one dataset dir (kuavo-train check-data ROOT [ROOT ...]) or --config-name NAME")
    jobs.extend((None, root, dict(cli_expect)) for root in roots)
    return jobs


def _config_jobs(args, overrides: list[str], cli_expect: dict[str, Any]):
    from kuavo_train.config.args import parse_config_args
    from kuavo_train.config.load import load_config

    flags = [f"--config-name={args.config_name}"] if args.config_name else []
    flags += [f"--config-path={args.config_path}"] if args.config_path else []
    parsed = parse_config_args([*flags, *overrides])
    cfg = load_config(parsed.config_dir, parsed.config_name, parsed.overrides)
    recorded = _recorded_cameras(cfg)
    jobs = []
    for task in cfg.tasks:
        own = recorded.get(task.id)
        # As in training: a camera this task lacks but another task's data has is masked for it, not a problem.
        masked = [] if own is None else [c for c in task.data.cameras if c not in own and
                                         any(c in cams for t, cams in recorded.items() if t != task.id)]
        expect = {
            "expected_state_dim": task.data.state_dim,
            "expected_action_dim": task.data.action_dim,
            "expected_cameras": [c for c in task.data.cameras if c not in masked],
            "expected_fps": None,
            "instruction": task.language_instruction,
        }
        expect.update({k: v for k, v in cli_expect.items() if v is not None})  # explicit flags win
        label = f"task {task.id} ({task.name})" + (f"; trained with {', '.join(masked)} masked" if masked else "")
        jobs.append((label, task.data.root, expect))
    return jobs


def _recorded_cameras(cfg) -> dict[int, set[str]]:
    """Camera keys in each task's dataset (from meta/info.json); a dataset that cannot be read is left out
    (its own check reports why)."""
    cameras = {}
    for task in cfg.tasks:
        try:
            cameras[task.id] = set(read_source_info(task.data.root).camera_keys)
        except KuavoError:
            continue
    return cameras


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value


def _camera_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected camera names separated by commas")
    return [n if n.startswith(CAMERA_PREFIX) else CAMERA_PREFIX + n for n in names]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _unreadable(info: SourceInfo, path: Path, exc: Exception, fix: str) -> str:
    return (
        f"{path}: cannot be read as parquet ({type(exc).__name__}: {_first_line(exc)}); "
        f"the file is corrupt or truncated - {fix}"
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _listing(items: Sequence[Any]) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _num(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _opt(value: int | None) -> str:
    return "?" if value is None else str(value)


def _quote(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
