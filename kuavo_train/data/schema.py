"""One feature schema for the whole curriculum: union of cameras, largest state/action sizes.

Smaller vectors are zero-padded to the union size; ``action_dim_mask`` marks a sample's own action
dims so padding never enters the loss (the model is never taught to predict padding). Each task
keeps its own action size so inference returns exactly that many values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from kuavo_train.errors import KuavoError


@dataclass(frozen=True)
class TaskFeatures:
    task_id: int
    name: str
    instruction: str
    state_dim: int
    action_dim: int
    # Cameras of the model this task's data lacks: its samples carry a blank image there, masked out of
    # attention as SmolVLA masks an absent camera (`<camera>_padding_mask` False).
    missing_cameras: tuple[str, ...] = ()


def camera_padding_mask_key(camera: str) -> str:
    """The per-sample batch key lerobot's SmolVLA reads to mask a camera (True = the image is real)."""
    return f"{camera}_padding_mask"


@dataclass(frozen=True)
class FeatureSchema:
    """Shapes of the policy's inputs/outputs; saved with every checkpoint (``kuavo_schema.json``)."""

    # Camera key -> (C, H, W) as stored in the data.
    cameras: dict[str, tuple[int, int, int]]
    state_dim: int
    action_dim: int
    fps: float
    tasks: tuple[TaskFeatures, ...]

    @property
    def masks_cameras(self) -> bool:
        """Whether some task lacks a camera (then every sample carries a padding mask per camera)."""
        return any(t.missing_cameras for t in self.tasks)

    def task(self, task_id: int) -> TaskFeatures:
        for item in self.tasks:
            if item.task_id == task_id:
                return item
        raise KuavoError(
            f"task id {task_id} is not part of this model's schema (ids: {[t.task_id for t in self.tasks]})"
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cameras"] = {k: list(v) for k, v in self.cameras.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSchema:
        return cls(
            cameras={k: tuple(v) for k, v in data["cameras"].items()},
            state_dim=int(data["state_dim"]),
            action_dim=int(data["action_dim"]),
            fps=float(data["fps"]),
            tasks=tuple(
                TaskFeatures(**{**t, "missing_cameras": tuple(t.get("missing_cameras", ()))}) for t in data["tasks"]
            ),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> FeatureSchema:
        if not path.is_file():
            raise KuavoError(f"{path} is missing; this dir was not written by kuavo_train")
        return cls.from_dict(json.loads(path.read_text()))


def build_feature_schema(per_task: list[tuple[TaskFeatures, dict[str, tuple[int, int, int]], float]]) -> FeatureSchema:
    """Union of ``(task features, camera shapes, fps)`` over the curriculum; fps must agree."""
    fps_values = {fps for _, _, fps in per_task}
    if len(fps_values) > 1:
        detail = ", ".join(f"{t.name}={fps:g}" for t, _, fps in per_task)
        raise KuavoError(
            f"the curriculum's datasets have different fps ({detail}); resample them to one fps before training"
        )
    cameras: dict[str, tuple[int, int, int]] = {}
    for task, task_cameras, _ in per_task:
        for key, shape in task_cameras.items():
            if cameras.setdefault(key, tuple(shape)) != tuple(shape):
                raise KuavoError(
                    f"camera {key} is {tuple(shape)} in task {task.name} but {cameras[key]} in an earlier task; "
                    "tasks share batches, so export every task's camera at one resolution"
                )
    tasks = tuple(
        replace(t, missing_cameras=tuple(c for c in cameras if c not in task_cameras))
        for t, task_cameras, _ in per_task
    )
    return FeatureSchema(
        cameras=cameras,
        state_dim=max(t.state_dim for t, _, _ in per_task),
        action_dim=max(t.action_dim for t, _, _ in per_task),
        fps=fps_values.pop(),
        tasks=tasks,
    )
