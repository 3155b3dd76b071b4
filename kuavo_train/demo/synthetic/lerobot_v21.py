"""Pieces of the LeRobot v2.1 format as the Kuavo exporter writes it: paths, feature specs, per-episode
stats, and the parquet / mp4 / jsonl encoders used by :mod:`kuavo_train.demo.synthetic.writer`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from kuavo_train.demo.synthetic.expert import ACTION_DIM_WALK, JOINT_NAMES, STATE_DIM, WALK_NAMES, SyntheticTaskSpec
from kuavo_train.errors import KuavoError

__all__ = ["CAMERA_KEYS", "DEPTH_KEYS", "FPS", "choose_video_codec"]

# --------------------------------------------------------------------------------------------
# Format constants (what the Kuavo exporter writes)
# --------------------------------------------------------------------------------------------

FPS = 10
ROBOT_TYPE = "kuavo4pro"
CODEBASE_VERSION = "v2.1"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

CAMERA_KEYS = (
    "observation.images.head_cam_h",
    "observation.images.wrist_cam_l",
    "observation.images.wrist_cam_r",
)
DEPTH_KEYS = ("observation.depth_h", "observation.depth_l", "observation.depth_r")

# --------------------------------------------------------------------------------------------
# Per-episode stats (meta/episodes_stats.jsonl)
# --------------------------------------------------------------------------------------------


def _stats(x: np.ndarray, axis) -> dict[str, Any]:
    x = x.astype(np.float64)
    keepdims = x.ndim == 1
    return {
        "min": np.min(x, axis=axis, keepdims=keepdims),
        "max": np.max(x, axis=axis, keepdims=keepdims),
        "mean": np.mean(x, axis=axis, keepdims=keepdims),
        "std": np.std(x, axis=axis, keepdims=keepdims),
        "count": np.array([len(x)]),
    }


def _channel_stats(frames: list[np.ndarray], channel_axis: int, scale: float) -> dict[str, Any]:
    """Exact per-channel min/max/mean/std over integer frames, shaped (C, 1, 1) and divided by ``scale``.

    Built from per-channel value histograms (fast even at 480x640); repeated frame objects (the static
    head camera) are counted, not re-scanned.
    """
    mult: dict[int, int] = {}
    unique: dict[int, np.ndarray] = {}
    for f in frames:
        mult[id(f)] = mult.get(id(f), 0) + 1
        unique.setdefault(id(f), f)
    n_channels = next(iter(unique.values())).shape[channel_axis]
    hists: list[np.ndarray] = [np.zeros(1, dtype=np.int64) for _ in range(n_channels)]
    for key, f in unique.items():
        for c in range(n_channels):
            h = np.bincount(np.take(f, c, axis=channel_axis).ravel()) * mult[key]
            if len(h) > len(hists[c]):
                h[: len(hists[c])] += hists[c]
                hists[c] = h
            else:
                hists[c][: len(h)] += h
    mins, maxs, means, stds = [], [], [], []
    for h in hists:
        values = np.arange(len(h), dtype=np.float64)
        nz = np.nonzero(h)[0]
        total = h.sum()
        mean = float((h * values).sum() / total)
        mins.append(float(nz[0]))
        maxs.append(float(nz[-1]))
        means.append(mean)
        stds.append(math.sqrt(float((h * (values - mean) ** 2).sum() / total)))
    out = {
        k: (np.array(v) / scale)[:, None, None]
        for k, v in (("min", mins), ("max", maxs), ("mean", means), ("std", stds))
    }
    out["count"] = np.array([len(frames)])
    return out


def _image_stats(frames: list[np.ndarray]) -> dict[str, Any]:
    """Per-channel stats of (H, W, 3) uint8 frames, shaped (3, 1, 1) with values in [0, 1], as lerobot v2.1
    wrote them to episodes_stats.jsonl."""
    return _channel_stats(frames, channel_axis=2, scale=255.0)


def _depth_stats(depth: list[np.ndarray]) -> dict[str, Any]:
    """Per-channel stats (1, 1, 1) in mm of (1, H, W) uint16 depth frames (lerobot v2.1 would have written
    per-pixel (1, H, W) stats, which makes episodes_stats.jsonl enormous and breaks the v3.0 conversion's
    100 MB episodes-metadata limit at 480x640)."""
    return _channel_stats(depth, channel_axis=0, scale=1.0)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


# --------------------------------------------------------------------------------------------
# Features, parquet, jsonl
# --------------------------------------------------------------------------------------------


def _features(
    spec: SyntheticTaskSpec, hw: tuple[int, int], video: bool, with_depth: bool, legacy_names: bool, codec: str | None
) -> dict[str, dict]:
    h, w = hw
    state_names = list(JOINT_NAMES)
    action_names = list(JOINT_NAMES) + (list(WALK_NAMES) if spec.action_dim == ACTION_DIM_WALK else [])
    feats: dict[str, dict] = {
        "observation.state": {
            "dtype": "float32",
            "shape": [STATE_DIM],
            "names": {"motors": state_names} if legacy_names else state_names,
        },
        "action": {
            "dtype": "float32",
            "shape": [spec.action_dim],
            "names": {"motors": action_names} if legacy_names else action_names,
        },
    }
    for cam, depth_key in zip(CAMERA_KEYS, DEPTH_KEYS, strict=True):
        ft: dict[str, Any] = {
            "dtype": "video" if video else "image",
            "shape": [3, h, w],
            "names": ["channels", "height", "width"],
        }
        if video:
            ft["info"] = {
                "video.fps": float(FPS),
                "video.height": h,
                "video.width": w,
                "video.channels": 3,
                "video.codec": codec,
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "has_audio": False,
            }
        feats[cam] = ft
        if with_depth:
            feats[depth_key] = {"dtype": "uint16", "shape": [1, h, w], "names": ["channels", "height", "width"]}
    feats["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    feats["frame_index"] = {"dtype": "int64", "shape": [1], "names": None}
    feats["episode_index"] = {"dtype": "int64", "shape": [1], "names": None}
    feats["index"] = {"dtype": "int64", "shape": [1], "names": None}
    feats["task_index"] = {"dtype": "int64", "shape": [1], "names": None}
    return feats


def _hf_features(features: dict[str, dict]):
    """HF ``datasets.Features`` as lerobot v2.1 built them (``get_hf_features_from_features``)."""
    import datasets

    out = {}
    for key, ft in features.items():
        shape = tuple(ft["shape"])
        if ft["dtype"] == "video":
            continue
        if ft["dtype"] == "image":
            out[key] = datasets.Image()
        elif shape == (1,):
            out[key] = datasets.Value(dtype=ft["dtype"])
        elif len(shape) == 1:
            out[key] = datasets.Sequence(length=shape[0], feature=datasets.Value(dtype=ft["dtype"]))
        elif len(shape) == 3:
            out[key] = datasets.Array3D(shape=shape, dtype=ft["dtype"])
        else:  # pragma: no cover - not produced here
            raise ValueError(f"unsupported feature {key}: {ft}")
    return datasets.Features(out)


def _write_episode_parquet(path: Path, columns: dict[str, Any], hf_features) -> None:
    import datasets
    import pyarrow.parquet as pq

    ds = datasets.Dataset.from_dict(columns, features=hf_features, split="train")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same table (schema + "huggingface" metadata) that Dataset.to_parquet writes, without its progress bar.
    pq.write_table(ds.data.table, path)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------

_CODEC_PREFERENCE = (
    ("libsvtav1", "av1"),  # what the Kuavo exporter / lerobot v2.1 used
    ("libaom-av1", "av1"),
    ("libx264", "h264"),
    ("libopenh264", "h264"),
    ("mpeg4", "mpeg4"),
)


def choose_video_codec() -> tuple[str, str]:
    """(encoder name, codec name for info.json) of the best encoder in the installed ``av`` wheel."""
    import av

    available = av.codecs_available
    for encoder, codec in _CODEC_PREFERENCE:
        if encoder in available:
            return encoder, codec
    raise KuavoError("synthetic data: the installed PyAV has no AV1/H.264/MPEG-4 encoder; use video=False")


def _encode_mp4(path: Path, frames: list[np.ndarray], fps: int, encoder: str) -> None:
    import av

    if encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr otherwise
    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if encoder == "libsvtav1":
            stream.options = {"crf": "30", "g": "2"}  # lerobot v2.1 defaults
        elif encoder in ("libx264", "libaom-av1"):
            stream.options = {"crf": "23" if encoder == "libx264" else "30", "g": "2"}
        else:
            stream.options = {"g": "2"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
