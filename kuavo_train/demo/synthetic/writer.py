"""Writes a synthetic task as a Kuavo-style LeRobot v2.1 dataset (parquet, optional mp4 videos, meta files).

The dataset is built in a temporary sibling directory and renamed into place, with a hidden generation
record (``.synthetic_generation.json``) that makes a rerun with the same parameters a no-op.  Also the CLI
(``python -m kuavo_train.demo.synthetic``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from kuavo_train.demo.synthetic.expert import (
    ACTION_DIM_WALK,
    STATE_DIM,
    SyntheticTaskSpec,
    _check_action_dim,
    _check_task_id,
    _rollout,
    episode_conditions,
)
from kuavo_train.demo.synthetic.lerobot_v21 import (
    CAMERA_KEYS,
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_PATH,
    DEPTH_KEYS,
    FPS,
    ROBOT_TYPE,
    VIDEO_PATH,
    _depth_stats,
    _encode_mp4,
    _features,
    _hf_features,
    _image_stats,
    _jsonable,
    _stats,
    _write_episode_parquet,
    _write_jsonl,
    choose_video_codec,
)
from kuavo_train.demo.synthetic.render import _png_bytes, render_depth, render_head_image, render_wrist_image
from kuavo_train.errors import KuavoError, guarded

__all__ = ["SyntheticTaskSpec", "load_generation_info", "main", "write_synthetic_task"]

MARKER_NAME = ".synthetic_generation.json"
GENERATOR_VERSION = 1

# The marker's "generator" field keeps the module's historic name, so that regenerated datasets stay
# byte-identical to earlier ones.
_GENERATOR_NAME = "kuavo_train.demo.synthetic_data"


def _params_dict(
    spec, num_episodes, min_len, max_len, image_hw, video, with_depth, legacy_names, leftover_images, seed
) -> dict[str, Any]:
    return {
        "spec": asdict(spec),
        "num_episodes": num_episodes,
        "min_len": min_len,
        "max_len": max_len,
        "image_hw": list(image_hw),
        "video": video,
        "with_depth": with_depth,
        "legacy_names": legacy_names,
        "leftover_images": leftover_images,
        "seed": seed,
    }


def _file_inventory(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER_NAME
    }


def _is_identical_generation(root: Path, params: dict[str, Any]) -> bool:
    marker = root / MARKER_NAME
    if not marker.is_file():
        return False
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if data.get("generator_version") != GENERATOR_VERSION or data.get("params") != params:
        return False
    return data.get("files") == _file_inventory(root)


def load_generation_info(root: Path) -> dict[str, Any]:
    """The generation record of a synthetic dataset (parameters and each episode's goal ``g``).

    Stored in ``<root>/.synthetic_generation.json`` (a hidden file the Kuavo format does not know about and
    lerobot ignores); benchmarks use the goals to compute ground truth with :func:`expert_action_chunk`.
    """
    marker = Path(root) / MARKER_NAME
    if not marker.is_file():
        raise KuavoError(f"synthetic data: {root} is not a synthetic dataset (no {MARKER_NAME})")
    return json.loads(marker.read_text())


def _validate(spec, num_episodes, min_len, max_len, image_hw, video) -> tuple[int, int]:
    if not isinstance(spec, SyntheticTaskSpec):
        raise KuavoError(f"synthetic data: spec must be a SyntheticTaskSpec, got {type(spec).__name__}")
    _check_task_id(spec.task_id)
    _check_action_dim(spec.action_dim)
    if not isinstance(spec.instruction, str) or not spec.instruction.strip():
        raise KuavoError("synthetic data: the instruction must be a non-empty string")
    if num_episodes < 1:
        raise KuavoError(f"synthetic data: num_episodes must be >= 1, got {num_episodes}")
    if min_len < 1 or max_len < min_len:
        raise KuavoError(f"synthetic data: need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    try:
        h, w = (int(v) for v in image_hw)
    except (TypeError, ValueError):
        raise KuavoError(f"synthetic data: image_hw must be (height, width), got {image_hw!r}") from None
    if h < 8 or w < 8:
        raise KuavoError(f"synthetic data: image_hw must be at least 8x8, got {h}x{w}")
    if video and (h % 2 or w % 2):
        raise KuavoError(f"synthetic data: video mode (yuv420p) needs even height/width, got {h}x{w}")
    return h, w


def write_synthetic_task(
    root: Path,
    spec: SyntheticTaskSpec,
    *,
    num_episodes: int = 12,
    min_len: int = 40,
    max_len: int = 60,
    image_hw: tuple[int, int] = (48, 64),
    video: bool = False,
    with_depth: bool = False,
    legacy_names: bool = False,
    leftover_images: bool = False,
    seed: int = 0,
) -> Path:
    """Write one synthetic task as a Kuavo-style LeRobot v2.1 dataset at ``root`` and return ``root``.

    The dataset is built in a temporary sibling directory and renamed into place, so ``root`` is either
    absent or complete.  ``root`` may be missing or an empty directory; if it already holds exactly this
    generation (same parameters, files untouched) it is returned as is; anything else is refused with a
    :class:`KuavoError` (user data is never overwritten).
    """
    root = Path(root)
    hw = _validate(spec, num_episodes, min_len, max_len, image_hw, video)
    params = _params_dict(
        spec,
        num_episodes,
        min_len,
        max_len,
        hw,
        bool(video),
        bool(with_depth),
        bool(legacy_names),
        bool(leftover_images),
        int(seed),
    )

    def refuse() -> KuavoError:
        return KuavoError(
            f"synthetic data: {root} exists and is not empty (and is not an identical earlier synthetic "
            "generation); refusing to overwrite it - choose another --out directory or delete it yourself"
        )

    if root.exists():
        if not root.is_dir():
            raise refuse()
        if any(root.iterdir()):
            if _is_identical_generation(root, params):
                return root
            raise refuse()

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the final dataset dir should look like any other
    try:
        _write_dataset(
            tmp,
            spec,
            num_episodes=num_episodes,
            min_len=min_len,
            max_len=max_len,
            hw=hw,
            video=bool(video),
            with_depth=bool(with_depth),
            legacy_names=bool(legacy_names),
            leftover_images=bool(leftover_images),
            seed=int(seed),
        )
        marker = {
            "generator": _GENERATOR_NAME,
            "generator_version": GENERATOR_VERSION,
            "params": params,
            "episodes": [
                {"episode_index": i, "goal": episode_conditions(seed, i, min_len, max_len)["goal"].tolist()}
                for i in range(num_episodes)
            ],
            "files": _file_inventory(tmp),
        }
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=1))
        if root.exists():
            try:
                root.rmdir()  # only succeeds if it is (still) empty
            except OSError:
                pass
        try:
            os.rename(tmp, root)
        except OSError:
            # Someone else filled root meanwhile: fine if it is the same generation, else refuse.
            if root.is_dir() and _is_identical_generation(root, params):
                return root
            raise refuse() from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write_dataset(
    out: Path,
    spec: SyntheticTaskSpec,
    *,
    num_episodes: int,
    min_len: int,
    max_len: int,
    hw: tuple[int, int],
    video: bool,
    with_depth: bool,
    legacy_names: bool,
    leftover_images: bool,
    seed: int,
) -> None:
    encoder, codec = choose_video_codec() if video else (None, None)
    features = _features(spec, hw, video, with_depth, legacy_names, codec)
    hf_features = _hf_features(features)
    (out / "meta").mkdir(parents=True)

    episodes_meta, episodes_stats = [], []
    global_index = 0
    for ep in range(num_episodes):
        cond = episode_conditions(seed, ep, min_len, max_len)
        noise_rng = np.random.default_rng([int(seed), ep, spec.task_id, 0xA0])
        states, actions = _rollout(spec.task_id, cond, spec.action_dim, noise_rng)
        n = cond["length"]
        goal = cond["goal"]
        chunk = ep // CHUNKS_SIZE

        head = render_head_image(goal, hw)
        frames = {
            CAMERA_KEYS[0]: [head] * n,
            CAMERA_KEYS[1]: [render_wrist_image(s[7], hw, "l") for s in states],
            CAMERA_KEYS[2]: [render_wrist_image(s[15], hw, "r") for s in states],
        }

        cols: dict[str, Any] = {"observation.state": states, "action": actions}
        ep_stats: dict[str, Any] = {"observation.state": _stats(states, 0), "action": _stats(actions, 0)}
        head_png = None if video else _png_bytes(head)
        for cam, depth_key, side in zip(CAMERA_KEYS, DEPTH_KEYS, ("h", "l", "r"), strict=True):
            if video:
                _encode_mp4(
                    out / VIDEO_PATH.format(episode_chunk=chunk, video_key=cam, episode_index=ep),
                    frames[cam],
                    FPS,
                    encoder,
                )
            else:
                if cam == CAMERA_KEYS[0]:
                    cols[cam] = [{"bytes": head_png, "path": None}] * n
                else:
                    cols[cam] = [{"bytes": _png_bytes(f), "path": None} for f in frames[cam]]
            ep_stats[cam] = _image_stats(frames[cam])
            if with_depth:
                grip_col = 7 if side == "l" else 15
                depth = [render_depth(side, goal, s[grip_col], hw) for s in states]
                cols[depth_key] = depth
                ep_stats[depth_key] = _depth_stats(depth)
            if leftover_images and ep == 0:
                img_dir = out / "images" / cam / f"episode_{ep:06d}"
                img_dir.mkdir(parents=True, exist_ok=True)
                for t in range(min(3, n)):
                    (img_dir / f"frame_{t:06d}.png").write_bytes(_png_bytes(frames[cam][t]))

        frame_index = np.arange(n, dtype=np.int64)
        cols["timestamp"] = (frame_index / FPS).astype(np.float32)
        cols["frame_index"] = frame_index
        cols["episode_index"] = np.full(n, ep, dtype=np.int64)
        cols["index"] = np.arange(global_index, global_index + n, dtype=np.int64)
        cols["task_index"] = np.zeros(n, dtype=np.int64)
        for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            ep_stats[key] = _stats(cols[key], 0)
        # column order = features order, like the exporter
        cols = {k: cols[k] for k in features if k in cols}
        _write_episode_parquet(out / DATA_PATH.format(episode_chunk=chunk, episode_index=ep), cols, hf_features)

        episodes_meta.append({"episode_index": ep, "tasks": [spec.instruction], "length": n})
        episodes_stats.append({"episode_index": ep, "stats": _jsonable(ep_stats)})
        global_index += n

    total_chunks = (num_episodes - 1) // CHUNKS_SIZE + 1
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": ROBOT_TYPE,
        "total_episodes": num_episodes,
        "total_frames": global_index,
        "total_tasks": 1,
        "total_videos": num_episodes * len(CAMERA_KEYS) if video else 0,
        "total_chunks": total_chunks,
        "chunks_size": CHUNKS_SIZE,
        "fps": FPS,
        "splits": {"train": f"0:{num_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4, ensure_ascii=False))
    _write_jsonl(out / "meta" / "episodes.jsonl", episodes_meta)
    _write_jsonl(out / "meta" / "tasks.jsonl", [{"task_index": 0, "task": spec.instruction}])
    _write_jsonl(out / "meta" / "episodes_stats.jsonl", episodes_stats)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m kuavo_train.demo.synthetic",
        description="Write a synthetic Kuavo task (LeRobot v2.1, as the robot exports it).",
    )
    p.add_argument("--out", required=True, type=Path, help="dataset directory to create (must not hold other data)")
    p.add_argument("--task-id", required=True, type=int, help="task id >= 1 (selects the generating rule)")
    p.add_argument("--instruction", required=True, help="language instruction stored in tasks.jsonl")
    p.add_argument("--action-dim", type=int, default=STATE_DIM, choices=(STATE_DIM, ACTION_DIM_WALK))
    p.add_argument("--episodes", type=int, default=12)
    p.add_argument("--min-len", type=int, default=40)
    p.add_argument("--max-len", type=int, default=60)
    p.add_argument("--height", type=int, default=48)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--video", action="store_true", help="store cameras as mp4 videos instead of PNGs in parquet")
    p.add_argument("--depth", action="store_true", help="add observation.depth_h/_l/_r uint16 columns")
    p.add_argument("--legacy-names", action="store_true", help='write names as {"motors": [...]}')
    p.add_argument("--leftover-images", action="store_true", help="leave an images/ folder like some exports")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    return guarded(lambda: _write_and_print(args))


def _write_and_print(args: argparse.Namespace) -> int:
    root = write_synthetic_task(
        args.out,
        SyntheticTaskSpec(args.task_id, args.instruction, args.action_dim),
        num_episodes=args.episodes,
        min_len=args.min_len,
        max_len=args.max_len,
        image_hw=(args.height, args.width),
        video=args.video,
        with_depth=args.depth,
        legacy_names=args.legacy_names,
        leftover_images=args.leftover_images,
        seed=args.seed,
    )
    print(root)
    return 0
