"""Checks of the dataset metadata: meta/info.json features and expectations, episode lists (v2.1/v3.0), tasks,
leftovers."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kuavo_train.data.check.messages import int_or_none, listing, num, quote, unreadable
from kuavo_train.data.check.report import CameraSummary, DatasetReport, FeatureSummary
from kuavo_train.data.constants import ACTION, CAMERA_PREFIX, STATE
from kuavo_train.data.source import DEPTH_PREFIX, SourceInfo, read_source_info
from kuavo_train.errors import KuavoError

VECTOR_KEYS = (STATE, ACTION)


@dataclass
class Episode:
    index: int
    length: int | None
    tasks: list[str]
    # v3.0: (chunk, file) of each video key; v2.1: unused (one file per episode).
    videos: dict[str, tuple[int, int]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# meta/info.json
# --------------------------------------------------------------------------------------------


def read_info(root: str | Path) -> SourceInfo:
    """``read_source_info`` with every malformed-metadata error turned into a one-line ``KuavoError``."""
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
    _require_feature_specs(info)
    return info


def _require_feature_specs(info: SourceInfo) -> None:
    info_json = info.root / "meta" / "info.json"
    if not isinstance(info.features, dict):
        raise KuavoError(
            f"{info_json}: 'features' must be a mapping of feature name -> spec; restore it from the export"
        )
    for key, feature in info.features.items():
        if not isinstance(feature, dict) or "dtype" not in feature or not isinstance(feature.get("shape"), list):
            raise KuavoError(
                f"{info_json}: feature '{key}' needs a 'dtype' and a 'shape' list; "
                "restore meta/info.json from the export"
            )


def summarize_features(info: SourceInfo, report: DatasetReport, info_json: str) -> None:
    """Fill the report's features, cameras, depth keys and state/action dims; state and action must be 1-D."""
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
                f"{info_json}: feature '{key}' is missing; SmolVLA needs {STATE} and {ACTION} - "
                "re-export the dataset with them"
            )
        elif len(summary.shape) != 1:
            report.problems.append(
                f"{info_json}: feature '{key}' has shape {list(summary.shape)}; "
                "it must be a 1-D vector - re-export the dataset"
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


def check_expectations(info, report, info_json, state_dim, action_dim, cameras, fps) -> None:
    """Compare state/action sizes, cameras and fps with what the caller expects."""
    _check_dims(report, info_json, state_dim, action_dim)
    _check_cameras(report, info_json, cameras)
    _check_fps(info, report, info_json, fps)


def _check_dims(report: DatasetReport, info_json: str, state_dim, action_dim) -> None:
    for key, have, want, option in (
        (STATE, report.state_dim, state_dim, "--state-dim / task.data.state_dim"),
        (ACTION, report.action_dim, action_dim, "--action-dim / task.data.action_dim"),
    ):
        if want is not None and have is not None and int(want) != have:
            report.problems.append(
                f"{info_json}: {key} has {have} dims but {int(want)} are expected ({option}); point the task at the "
                f"right dataset or set the expected size to {have}"
            )


def _check_cameras(report: DatasetReport, info_json: str, cameras) -> None:
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


def _check_fps(info: SourceInfo, report: DatasetReport, info_json: str, fps) -> None:
    if fps is not None and not math.isclose(float(fps), info.fps, rel_tol=0, abs_tol=1e-6):
        report.problems.append(
            f"{info_json}: fps is {num(info.fps)} but {num(fps)} is expected; re-export the dataset at "
            f"{num(fps)} fps (or check --fps)"
        )
    for cam in report.cameras:
        video_fps = (info.features[cam.key].get("info") or {}).get("video.fps")
        if (
            cam.storage == "video"
            and video_fps is not None
            and not math.isclose(float(video_fps), info.fps, abs_tol=1e-6)
        ):
            report.problems.append(
                f"{info_json}: {cam.key} declares video.fps {num(video_fps)} but the dataset fps is {num(info.fps)}; "
                "re-export the videos at the dataset fps"
            )


# --------------------------------------------------------------------------------------------
# Episode metadata
# --------------------------------------------------------------------------------------------


def read_episodes(info: SourceInfo, report: DatasetReport) -> dict[int, Episode]:
    """The episodes the metadata lists (meta/episodes.jsonl for v2.1, meta/episodes/*.parquet for v3.0)."""
    return _v21_episodes(info, report) if info.version == "v2.1" else _v30_episodes(info, report)


def _v21_episodes(info: SourceInfo, report: DatasetReport) -> dict[int, Episode]:
    out = {}
    for row in info.episodes:
        index = int(row["episode_index"])
        tasks = row.get("tasks") or []
        out[index] = Episode(index, int_or_none(row.get("length")), [str(t) for t in tasks])
    episodes_jsonl = info.root / "meta" / "episodes.jsonl"
    if len(out) != info.total_episodes:
        report.problems.append(
            f"{episodes_jsonl}: lists {len(out)} episodes "
            f"but meta/info.json says total_episodes={info.total_episodes}; "
            "the export is incomplete - re-export it"
        )
    strays = [p for p in info.data_files if episode_of_v21_file(p) not in out]
    if strays:
        report.problems.append(
            f"{listing([str(p) for p in strays])}: data file(s) of episode(s) that {episodes_jsonl} does not list; "
            "the export is inconsistent - re-export it (or restore the file names)"
        )
    return out


def _v30_episodes(info: SourceInfo, report: DatasetReport) -> dict[int, Episode]:
    files = sorted((info.root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        report.problems.append(
            f"{info.root / 'meta' / 'episodes'}: no episode metadata files; "
            "the v3.0 export is incomplete - re-export it"
        )
        return {}
    out: dict[int, Episode] = {}
    for path in files:
        try:
            rows = _read_v30_episode_rows(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid/OSError/... for damaged files
            report.problems.append(unreadable(path, exc, "restore meta/episodes from the original export"))
            continue
        for row in rows:
            if row.get("episode_index") is not None:
                episode = _v30_episode(info, row)
                out[episode.index] = episode
    if len(out) != info.total_episodes:
        report.problems.append(
            f"{info.root / 'meta' / 'episodes'}: lists {len(out)} episodes but meta/info.json says "
            f"total_episodes={info.total_episodes}; the export is incomplete - re-export it"
        )
    return out


def _read_v30_episode_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    video_cols = [c for c in schema.names if c.startswith("videos/") and c.endswith(("/chunk_index", "/file_index"))]
    columns = [c for c in ("episode_index", "length", "tasks") if c in schema.names] + video_cols
    return pq.read_table(path, columns=columns).to_pylist()


def _v30_episode(info: SourceInfo, row: dict) -> Episode:
    index = int(row["episode_index"])
    episode = Episode(index, int_or_none(row.get("length")), [str(t) for t in row.get("tasks") or []])
    for key in info.video_keys:
        chunk, file = row.get(f"videos/{key}/chunk_index"), row.get(f"videos/{key}/file_index")
        if chunk is not None and file is not None:
            episode.videos[key] = (int(chunk), int(file))
    return episode


def episode_of_v21_file(path: Path) -> int | None:
    """3 for ``episode_000003.parquet``; None for a file not named like a v2.1 episode."""
    match = re.fullmatch(r"episode_(\d+)\.parquet", path.name)
    return int(match.group(1)) if match else None


def check_tasks(report: DatasetReport, episodes: dict[int, Episode], instruction: str | None) -> None:
    """Count the dataset's task strings; note several of them, or ones differing from the training instruction."""
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
                f"the dataset's own task string {quote(differing[0])}"
                f"{f' (and {len(differing) - 1} more)' if len(differing) > 1 else ''} ({n} episode(s)) differs from "
                f"the instruction {quote(wanted)}; training uses the config's language_instruction, not the dataset's"
            )


def check_extras(info: SourceInfo, report: DatasetReport) -> None:
    """Note depth columns and a leftover ``images/`` folder."""
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
