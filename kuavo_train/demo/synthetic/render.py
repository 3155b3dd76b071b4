"""Camera frames of the synthetic Kuavo tasks: head / wrist images, depth maps and their PNG encoding.

The head camera shows the goal (whole-image tint + a white square placed by the goal); the wrist cameras
show the gripper opening (brightness + finger bars).  See ``docs/synthetic_data.md``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["render_depth", "render_head_image", "render_wrist_image"]


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
