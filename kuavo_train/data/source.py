"""Read a source dataset dir's metadata (v2.1 or v3.0) and reject what is not a LeRobot dataset.

Only metadata is read here (info.json, episodes, tasks, file listing); deep checks of the frames
live in ``check.py``. Nothing is ever written to the source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kuavo_train.data.constants import ACTION, CAMERA_PREFIX, STATE
from kuavo_train.errors import KuavoError

SUPPORTED_VERSIONS = ("v2.1", "v3.0")
DEPTH_PREFIX = "observation.depth"


@dataclass
class SourceInfo:
    """What a dataset dir declares about itself."""

    root: Path
    version: str
    fps: float
    features: dict[str, dict]
    raw_info: dict
    total_episodes: int
    total_frames: int
    # v2.1: per-episode parquet files; v3.0: chunked files.
    data_files: list[Path] = field(default_factory=list)
    # v2.1 episodes.jsonl rows ({"episode_index", "tasks", "length"}); empty for v3.0 (lerobot reads them).
    episodes: list[dict] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if k.startswith(CAMERA_PREFIX) and f["dtype"] in ("image", "video")]

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f["dtype"] == "video"]

    def vector_dim(self, key: str) -> int | None:
        feature = self.features.get(key)
        return int(feature["shape"][0]) if feature else None

    @property
    def state_dim(self) -> int | None:
        return self.vector_dim(STATE)

    @property
    def action_dim(self) -> int | None:
        return self.vector_dim(ACTION)


def read_source_info(root: str | Path) -> SourceInfo:
    """Parse ``<root>/meta/info.json`` (+ v2.1 jsonl metadata) or raise a one-line ``KuavoError``."""
    root = Path(root).expanduser()
    if not root.exists():
        raise KuavoError(
            f"dataset dir {root} does not exist; set task.data.root (or data.roots.<task>) to your LeRobot dataset"
        )
    if not root.is_dir():
        raise KuavoError(
            f"dataset path {root} is not a directory; point it at the dataset root (the dir holding meta/)"
        )
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise KuavoError(
            f"{root} is not a LeRobot dataset: {info_path} is missing; "
            "point data.root at the dir that holds meta/info.json"
        )
    raw = _load_json(info_path)
    if not isinstance(raw, dict):
        raise KuavoError(f"{info_path} must hold a JSON object; restore it from the original export")
    version = str(raw.get("codebase_version", "unknown"))
    if version not in SUPPORTED_VERSIONS:
        raise KuavoError(
            f"{info_path}: codebase_version '{version}' is not supported (need v2.1 or v3.0); "
            "re-export the dataset with a recent LeRobot/Kuavo exporter"
        )
    for key in ("features", "fps"):
        if key not in raw:
            raise KuavoError(f"{info_path}: key '{key}' is missing; the file is not a valid LeRobot info.json")
    _check_features(raw["features"], info_path)
    try:
        info = SourceInfo(
            root=root,
            version=version,
            fps=float(raw["fps"]),
            features=raw["features"],
            raw_info=raw,
            total_episodes=int(raw.get("total_episodes") or 0),
            total_frames=int(raw.get("total_frames") or 0),
        )
    except (TypeError, ValueError) as exc:
        raise KuavoError(
            f"{info_path}: fps/total_episodes/total_frames must be numbers ({exc}); restore the file from the export"
        ) from exc
    if version == "v2.1":
        _read_v21_metadata(info)
    else:
        info.data_files = sorted((root / "data").glob("*/*.parquet"))
    if info.total_episodes == 0 or info.total_frames == 0 or not info.data_files:
        raise KuavoError(
            f"{root} holds no episodes (total_episodes={info.total_episodes}, data files={len(info.data_files)}); "
            "record or export data first"
        )
    return info


def _check_features(features, info_path: Path) -> None:
    if not isinstance(features, dict) or not features:
        raise KuavoError(f"{info_path}: 'features' must be a non-empty mapping of feature name -> spec")
    for key, spec in features.items():
        if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
            raise KuavoError(f"{info_path}: feature '{key}' lacks 'dtype'/'shape'; restore info.json from the export")


def _read_v21_metadata(info: SourceInfo) -> None:
    meta = info.root / "meta"
    for name in ("episodes.jsonl", "tasks.jsonl", "episodes_stats.jsonl"):
        if not (meta / name).is_file():
            raise KuavoError(f"{meta / name} is missing; a v2.1 LeRobot dataset needs it (re-export the dataset)")
    info.episodes = _load_jsonl(meta / "episodes.jsonl")
    try:
        info.tasks = [row["task"] for row in _load_jsonl(meta / "tasks.jsonl")]
        indices = sorted(int(row["episode_index"]) for row in info.episodes)
    except (KeyError, TypeError, ValueError) as exc:
        raise KuavoError(
            f"{meta}: a row of tasks.jsonl/episodes.jsonl lacks 'task'/'episode_index' ({exc}); re-export the dataset"
        ) from exc
    info.data_files = sorted((info.root / "data").glob("chunk-*/episode_*.parquet"))
    if indices != list(range(len(indices))):
        raise KuavoError(f"{meta / 'episodes.jsonl'}: episode_index values must be 0..{len(indices) - 1} without gaps")
    file_indices = sorted(int(path.stem.removeprefix("episode_")) for path in info.data_files)
    if info.data_files and file_indices != indices:
        raise KuavoError(
            f"{info.root}/data holds episode files {_brief(file_indices)} "
            f"but meta/episodes.jsonl lists {_brief(indices)}; "
            "the export is incomplete or mixed, re-export it"
        )


def _brief(values: list[int]) -> str:
    return str(values) if len(values) <= 6 else f"[{values[0]}..{values[-1]}] ({len(values)})"


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise KuavoError(f"{path} cannot be read ({exc.strerror}); check its permissions") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KuavoError(f"{path} is not valid JSON ({exc}); restore it from the original export") from exc


def _load_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise KuavoError(
                    f"{path}:{number} is not valid JSON ({exc.msg}); restore it from the original export"
                ) from exc
    return rows
