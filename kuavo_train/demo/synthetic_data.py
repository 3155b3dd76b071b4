"""Synthetic Kuavo datasets in the real export format (LeRobot v2.1), for tests and the demo.

The Kuavo robot exports LeRobot **v2.1** datasets (``meta/info.json`` + ``meta/*.jsonl`` +
``data/chunk-000/episode_XXXXXX.parquet``, optional ``videos/``).  This module writes datasets in
exactly that layout, so the real loading path (our v2.1 -> v3.0 conversion, built on lerobot's own
``convert_dataset_v21_to_v30`` step functions, then ``LeRobotDataset``) is exercised end to end.

The content is a small, fully known control problem (see ``docs/synthetic_data.md``):

* every episode draws a goal ``g`` in ``[-1, 1]^2`` that is only visible in the head camera
  (whole-image R/G tint + a white square whose position encodes ``g``);
* the arm moves to a task-specific target ``T1_k = L1 @ [R_k g, 1]``, closes the task's gripper(s),
  then carries to ``T2_k = L2 @ [R_k g, 1]``; ``R_k`` is a task-specific rotation of the goal
  (task 2 = exact opposite of task 1, task 3/4 = +-90 degrees);
* the 4 walking dims of a 20-dim action are a task-specific function of ``g`` and of the stage,
  which is visible in the state (gripper) and the wrist cameras (brightness).

So the next-50-step action chunk is a deterministic function of (instruction, image, state) up to a
small noise, and tasks conflict: the same observation needs different actions for different tasks.
:func:`expert_action_chunk` gives the noise-free ground truth.

CLI::

    python -m kuavo_train.demo.synthetic_data --out DIR --task-id N --instruction "..." \\
        [--action-dim 20] [--episodes N] [--video]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kuavo_train.errors import KuavoError

__all__ = [
    "ACTION_DIM_WALK",
    "CAMERA_KEYS",
    "CHUNK_HORIZON",
    "DEPTH_KEYS",
    "FPS",
    "JOINT_NAMES",
    "STATE_DIM",
    "WALK_NAMES",
    "SyntheticTaskSpec",
    "choose_video_codec",
    "episode_conditions",
    "expert_action",
    "expert_action_chunk",
    "load_generation_info",
    "render_depth",
    "render_head_image",
    "render_wrist_image",
    "task_rotation",
    "task_targets",
    "write_synthetic_task",
]

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

JOINT_NAMES = (
    *(f"zarm_l{i}" for i in range(1, 8)),
    "gripper_l",
    *(f"zarm_r{i}" for i in range(1, 8)),
    "gripper_r",
)
WALK_NAMES = ("cmd_pos_x", "cmd_pos_y", "cmd_pos_yaw", "ctrl_change_cmd")
STATE_DIM = 16
ACTION_DIM_WALK = STATE_DIM + len(WALK_NAMES)  # 20
CHUNK_HORIZON = 50

ARM_IDX = np.array([0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14])
GRIP_IDX = np.array([7, 15])

MARKER_NAME = ".synthetic_generation.json"
GENERATOR_VERSION = 1

# --------------------------------------------------------------------------------------------
# The generating rule
# --------------------------------------------------------------------------------------------

GAIN = 0.15  # arm: a = s + GAIN * (target - s)
GRIP_GAIN = 0.4  # gripper: a = s + GRIP_GAIN * (gripper_target - s)
REACH_TOL = 0.08  # close the gripper once max_j |arm_j - T1_j| < REACH_TOL ...
CLOSING_LATCH = 0.2  # ... or once it has started closing (hysteresis, no dithering under noise)
STAGE_SWITCH = 0.5  # stage 2 (carry) once max(gripper) >= STAGE_SWITCH
NOISE_STD = 0.005  # per-step Gaussian noise on every recorded action dim (not ctrl_change_cmd)
INIT_ARM_RANGE = 0.6  # initial arm joints ~ U(-0.6, 0.6); grippers start open (0)
_BASE_SEED = 20250611  # the task-independent "robot": fixed forever, changing it changes all data

# Which gripper(s) the task closes, by (task_id - 1) % 3: left, right, both.
_GRIP_MASKS = (np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 1.0]))


def _radical_inverse_base2(n: int) -> float:
    out, f = 0.0, 0.5
    while n:
        out += f * (n & 1)
        n >>= 1
        f *= 0.5
    return out


def task_rotation(task_id: int) -> float:
    """Angle ``phi_k`` (radians) by which task ``task_id`` rotates the goal.

    Tasks 1..4 get 0, pi, pi/2, 3pi/2 (task 2 is the exact opposite of task 1, task 4 of task 3).
    Tasks 5..8 repeat that pattern shifted by 45 degrees, 9..12 by 22.5 degrees, etc.
    """
    k = _check_task_id(task_id)
    quadrant = (0.0, math.pi, 0.5 * math.pi, 1.5 * math.pi)[(k - 1) % 4]
    return quadrant + 0.5 * math.pi * _radical_inverse_base2((k - 1) // 4)


def _check_task_id(task_id: Any) -> int:
    if isinstance(task_id, bool) or not isinstance(task_id, (int, np.integer)) or int(task_id) < 1:
        raise KuavoError(f"synthetic data: task_id must be an integer >= 1, got {task_id!r}")
    return int(task_id)


def _base_params() -> dict[str, np.ndarray]:
    """Task-independent linear maps (the 'robot geometry'), drawn once from a fixed seed."""
    rng = np.random.default_rng(_BASE_SEED)

    def lin(n: int, amp_lo: float, amp_hi: float, bias: float) -> np.ndarray:
        amp = rng.uniform(amp_lo, amp_hi, n)
        theta = rng.uniform(0.0, 2.0 * math.pi, n)
        b = rng.uniform(-bias, bias, n)
        # row j: T_j = amp_j * (cos(theta_j) h1 + sin(theta_j) h2) + b_j
        return np.stack([amp * np.cos(theta), amp * np.sin(theta), b], axis=1)

    l1 = lin(len(ARM_IDX), 0.45, 0.8, 0.25)
    l2 = lin(len(ARM_IDX), 0.45, 0.8, 0.25)
    m1 = lin(3, 0.3, 0.5, 0.0)
    m2 = lin(3, 0.3, 0.5, 0.0)
    m1[:, 2] = (0.8, 0.0, 0.0)  # walk to the rack: mostly forward
    m2[:, 2] = (-0.6, 0.3, 1.2)  # turn around, walk to the placement rack
    return {"L1": l1, "L2": l2, "M1": m1, "M2": m2}


_BASE = _base_params()


def _rotated_goal(task_id: int, goal: np.ndarray) -> np.ndarray:
    """h = R(-phi_k) g, batched over leading dims of ``goal`` (..., 2)."""
    phi = task_rotation(task_id)
    c, s = math.cos(phi), math.sin(phi)
    g1, g2 = goal[..., 0], goal[..., 1]
    return np.stack([c * g1 + s * g2, -s * g1 + c * g2], axis=-1)


def _affine(mat: np.ndarray, h: np.ndarray) -> np.ndarray:
    return h @ mat[:, :2].T + mat[:, 2]


def task_targets(task_id: int, goal: Any) -> dict[str, np.ndarray]:
    """Task-specific targets for goal(s) ``goal`` (..., 2).

    Returns ``T1`` (..., 14) reach target of the 14 arm joints, ``T2`` (..., 14) carry target,
    ``walk1``/``walk2`` (..., 3) the (cmd_pos_x, cmd_pos_y, cmd_pos_yaw) of stage 1/2, and
    ``grip_mask`` (2,) which gripper(s) the task closes (left, right).
    """
    k = _check_task_id(task_id)
    g = np.asarray(goal, dtype=np.float64)
    h = _rotated_goal(k, g)
    return {
        "T1": _affine(_BASE["L1"], h),
        "T2": _affine(_BASE["L2"], h),
        "walk1": _affine(_BASE["M1"], h),
        "walk2": _affine(_BASE["M2"], h),
        "grip_mask": _GRIP_MASKS[(k - 1) % 3].copy(),
    }


def _check_action_dim(action_dim: int) -> int:
    if action_dim not in (STATE_DIM, ACTION_DIM_WALK):
        raise KuavoError(
            f"synthetic data: action_dim must be {STATE_DIM} or {ACTION_DIM_WALK} (walking task), got {action_dim!r}"
        )
    return int(action_dim)


def expert_action(task_id: int, state: Any, goal: Any, *, action_dim: int = STATE_DIM) -> np.ndarray:
    """One noise-free step of the expert policy: ``a = pi_k(state, goal)``.

    ``state`` (..., 16) and ``goal`` (..., 2) broadcast against each other; returns (..., action_dim)
    float64.  The next state of the synthetic robot is the action's first 16 dims.
    """
    action_dim = _check_action_dim(action_dim)
    s = np.asarray(state, dtype=np.float64)
    g = np.asarray(goal, dtype=np.float64)
    if s.shape[-1] != STATE_DIM or g.shape[-1] != 2:
        raise KuavoError(f"synthetic data: state must end in {STATE_DIM} and goal in 2, got {s.shape}, {g.shape}")
    batch = np.broadcast_shapes(s.shape[:-1], g.shape[:-1])
    s = np.broadcast_to(s, (*batch, STATE_DIM))
    g = np.broadcast_to(g, (*batch, 2))
    tg = task_targets(task_id, g)

    arm = s[..., ARM_IDX]
    grip = s[..., GRIP_IDX]
    stage2 = grip.max(axis=-1) >= STAGE_SWITCH  # (...)
    reached = np.abs(arm - tg["T1"]).max(axis=-1) < REACH_TOL
    closing = stage2 | reached | (grip.max(axis=-1) > CLOSING_LATCH)

    target = np.where(stage2[..., None], tg["T2"], tg["T1"])
    grip_target = np.where(closing[..., None], tg["grip_mask"], 0.0)

    out = np.empty((*batch, action_dim), dtype=np.float64)
    out[..., ARM_IDX] = arm + GAIN * (target - arm)
    out[..., GRIP_IDX] = grip + GRIP_GAIN * (grip_target - grip)
    if action_dim == ACTION_DIM_WALK:
        out[..., 16:19] = np.where(stage2[..., None], tg["walk2"], tg["walk1"])
        out[..., 19] = stage2.astype(np.float64)
    return out


def expert_action_chunk(
    task_id: int,
    state: Any,
    goal: Any,
    *,
    horizon: int = CHUNK_HORIZON,
    action_dim: int = STATE_DIM,
) -> np.ndarray:
    """Noise-free next-``horizon``-step action chunk from ``state`` (the ground truth a policy should predict).

    Rolls the expert out with ``s_{t+1} = a_t[:16]``.  Batched like :func:`expert_action`;
    returns (..., horizon, action_dim) float32.
    """
    if horizon < 1:
        raise KuavoError(f"synthetic data: horizon must be >= 1, got {horizon}")
    s = np.asarray(state, dtype=np.float64)
    actions = []
    for _ in range(horizon):
        a = expert_action(task_id, s, goal, action_dim=action_dim)
        actions.append(a)
        s = a[..., :STATE_DIM]
    return np.stack(actions, axis=-2).astype(np.float32)


def episode_conditions(seed: int, episode_index: int, min_len: int = 40, max_len: int = 60) -> dict[str, Any]:
    """Goal, initial state and length of an episode.

    Depends only on (seed, episode_index, min_len, max_len) - NOT on the task - so for the same seed every
    task starts from identical observations (images and state) and only the instruction tells them apart.
    """
    rng = np.random.default_rng([int(seed), int(episode_index), 0x5EED])
    goal = rng.uniform(-1.0, 1.0, 2)
    state0 = np.zeros(STATE_DIM)
    state0[ARM_IDX] = rng.uniform(-INIT_ARM_RANGE, INIT_ARM_RANGE, len(ARM_IDX))
    length = int(rng.integers(min_len, max_len + 1))
    return {"goal": goal, "state0": state0, "length": length}


def _rollout(task_id: int, cond: dict[str, Any], action_dim: int, noise_rng: np.random.Generator):
    length = cond["length"]
    states = np.empty((length, STATE_DIM))
    actions = np.empty((length, action_dim))
    s = cond["state0"].copy()
    for t in range(length):
        a = expert_action(task_id, s, cond["goal"], action_dim=action_dim)
        noise = noise_rng.normal(0.0, NOISE_STD, action_dim)
        if action_dim == ACTION_DIM_WALK:
            noise[19] = 0.0  # ctrl_change_cmd is a clean 0/1 flag
        a = a + noise
        a[GRIP_IDX] = np.clip(a[GRIP_IDX], 0.0, 1.0)
        states[t] = s
        actions[t] = a
        s = a[:STATE_DIM].copy()
    return states.astype(np.float32), actions.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _level(x: float) -> int:
    return int(np.clip(round(x * 255.0), 0, 255))


def render_head_image(goal: Any, hw: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Head camera (H, W, 3) uint8: whole image tinted by the goal + a white square placed by the goal.

    R level = 0.5 + 0.4 g1, G level = 0.5 + 0.4 g2, B = 0.25; square of side 0.25 min(H, W) centred at
    x = (0.5 + 0.3 g1) W, y = (0.5 - 0.3 g2) H.
    """
    h, w = hw
    g1, g2 = float(goal[0]), float(goal[1])
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[...] = (_level(0.5 + 0.4 * g1), _level(0.5 + 0.4 * g2), _level(0.25))
    side = max(2, round(0.25 * min(h, w)))
    cx, cy = (0.5 + 0.3 * g1) * w, (0.5 - 0.3 * g2) * h
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    img[max(0, y0) : max(0, y0 + side), max(0, x0) : max(0, x0 + side)] = 255
    return img


def render_wrist_image(gripper: float, hw: tuple[int, int] = (48, 64), side: str = "l") -> np.ndarray:
    """Wrist camera (H, W, 3) uint8: brightness 0.15 + 0.7 * gripper (0 open .. 1 closed), two dark finger
    bars whose gap shrinks as the gripper closes; the left camera is slightly blue, the right slightly red."""
    h, w = hw
    grip = float(np.clip(gripper, 0.0, 1.0))
    v = 0.15 + 0.7 * grip
    tint = (0.9, 1.0, 1.0) if side == "l" else (1.0, 1.0, 0.9)
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[...] = tuple(_level(v * t) for t in tint)
    bar = max(1, w // 10)
    gap = int(round((1.0 - grip) * 0.5 * w))
    left = max(0, w // 2 - gap // 2 - bar)
    right = min(w, w // 2 + gap // 2)
    dark = _level(0.05)
    img[h // 3 :, left : left + bar] = dark
    img[h // 3 :, right : right + bar] = dark
    return img


def render_depth(camera: str, goal: Any, gripper: float, hw: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Depth (1, H, W) uint16 in millimetres, like Kuavo's ``observation.depth_*`` columns."""
    h, w = hw
    if camera == "h":
        d = np.full((h, w), 1200, dtype=np.uint16)
        mask = render_head_image(goal, hw)[..., 2] == 255
        d[mask] = int(900 + 100 * float(goal[0]))
    else:
        d = np.full((h, w), int(150 + 250 * (1.0 - float(np.clip(gripper, 0.0, 1.0)))), dtype=np.uint16)
        d[h // 3 :, : max(1, w // 10)] = 60
    return d[None]


def _png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)  # lerobot v2.1's image writer setting
    return buf.getvalue()


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


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticTaskSpec:
    """One synthetic task: its id (selects the rule), its instruction, and its action size."""

    task_id: int  # 1..4 (any int >= 1 works; the rule is derived from it)
    instruction: str
    action_dim: int = STATE_DIM  # 20 for the walking task


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


def _features(spec: SyntheticTaskSpec, hw: tuple[int, int], video: bool, with_depth: bool, legacy_names: bool,
              codec: str | None) -> dict[str, dict]:
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
    for cam, depth_key in zip(CAMERA_KEYS, DEPTH_KEYS):
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


def _params_dict(spec, num_episodes, min_len, max_len, image_hw, video, with_depth, legacy_names,
                 leftover_images, seed) -> dict[str, Any]:
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
    params = _params_dict(spec, num_episodes, min_len, max_len, hw, bool(video), bool(with_depth),
                          bool(legacy_names), bool(leftover_images), int(seed))

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
        _write_dataset(tmp, spec, num_episodes=num_episodes, min_len=min_len, max_len=max_len, hw=hw,
                       video=bool(video), with_depth=bool(with_depth), legacy_names=bool(legacy_names),
                       leftover_images=bool(leftover_images), seed=int(seed))
        marker = {
            "generator": "kuavo_train.demo.synthetic_data",
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


def _write_dataset(out: Path, spec: SyntheticTaskSpec, *, num_episodes: int, min_len: int, max_len: int,
                   hw: tuple[int, int], video: bool, with_depth: bool, legacy_names: bool,
                   leftover_images: bool, seed: int) -> None:
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
        for cam, depth_key, side in zip(CAMERA_KEYS, DEPTH_KEYS, ("h", "l", "r")):
            if video:
                _encode_mp4(out / VIDEO_PATH.format(episode_chunk=chunk, video_key=cam, episode_index=ep),
                            frames[cam], FPS, encoder)
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


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m kuavo_train.demo.synthetic_data",
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
    try:
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
    except KuavoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
