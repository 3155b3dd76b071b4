"""Expert demonstrations of the sim tasks, written as LeRobot v3.0 datasets with lerobot's own writer.

Each episode starts from ``reset(seed)`` (seeds 0, 1, 2, ... per task) and runs Meta-World's
scripted expert until the task is solved. The executed action is the expert's plus Gaussian noise
(``action_noise``), while the recorded action is the clean expert action: the dataset then shows
how to recover from small deviations (DART-style noise injection), which a behaviour-cloned
policy needs in closed loop. Episodes the expert fails are skipped (and counted).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.sim.tasks import ACTION_DIM, CAMERA_KEY, COMPACT_STATE, FPS, STATE_DIM, SimEnv, SimTask

DONE_MARKER = ".complete"
ROBOT_TYPE = "sawyer_sim"


@dataclass(frozen=True)
class DemoSpec:
    episodes: int = 24
    image_size: int = 64
    action_noise: float = 0.1
    seed: int = 0
    compact_state: bool = False

    @property
    def state_dim(self) -> int:
        return len(COMPACT_STATE) if self.compact_state else STATE_DIM

    def marker_text(self) -> str:
        return f"{self.episodes} {self.image_size} {self.action_noise} {self.seed} {self.state_dim}\n"


def features(image_size: int, state_dim: int = STATE_DIM) -> dict:
    return {
        CAMERA_KEY: {"dtype": "image", "shape": (image_size, image_size, 3), "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (state_dim,), "names": None},
        "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
    }


def record_episode(env: SimEnv, seed: int, action_noise: float, rng: np.random.Generator) -> list[dict] | None:
    """One expert rollout as frames, or None when the expert did not solve the task in time."""
    frames = []
    env.reset(seed)
    for _ in range(env.task.max_steps):
        action = env.expert_action()
        frames.append({CAMERA_KEY: env.render(), "observation.state": env.state.copy(), "action": action})
        executed = action + rng.normal(0.0, action_noise, size=action.shape).astype(np.float32)
        if env.step(executed):
            return frames
    return None


def _writing_marker(root: Path) -> Path:
    # Beside the dataset dir: lerobot's create() wants the dir itself not to exist yet.
    return root.parent / f".{root.name}.writing"


def write_task_demos(task: SimTask, root: Path, spec: DemoSpec) -> Path:
    """Write ``spec.episodes`` solved episodes of ``task`` to ``root`` (reused when already complete)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    marker = root / DONE_MARKER
    if marker.is_file() and marker.read_text() == spec.marker_text():
        return root
    writing = _writing_marker(root)
    if root.exists():
        if not writing.is_file():
            raise FileExistsError(
                f"{root} exists and is not a complete demo set of these settings "
                f"({DemoSpec.__name__} {spec.marker_text().strip()}); delete it or choose another --out"
            )
        shutil.rmtree(root)  # our own interrupted write (its marker is still there): start over
    root.parent.mkdir(parents=True, exist_ok=True)
    writing.write_text(spec.marker_text())
    dataset = LeRobotDataset.create(
        repo_id=f"sim/{task.name}",
        fps=FPS,
        features=features(spec.image_size, spec.state_dim),
        root=root,
        robot_type=ROBOT_TYPE,
        use_videos=False,
    )
    env = SimEnv(task, spec.image_size, spec.compact_state)
    rng = np.random.default_rng(spec.seed * 1000 + task.id)
    seed, failed = spec.seed * 100_000, 0
    while dataset.meta.total_episodes < spec.episodes:
        frames = record_episode(env, seed, spec.action_noise, rng)
        seed += 1
        if frames is None:
            failed += 1
            if failed > spec.episodes:
                raise RuntimeError(f"the {task.env_name} expert failed {failed} times; lower the action noise")
            continue
        for frame in frames:
            dataset.add_frame({**frame, "task": task.instruction})
        dataset.save_episode()
    dataset.finalize()
    env.close()
    marker.write_text(spec.marker_text())
    writing.unlink()
    return root
