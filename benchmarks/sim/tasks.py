"""The four Meta-World tasks of the closed-loop benchmark and the environment they run in.

Why these four (curriculum order): three of them share ONE scene — the Sawyer arm, a puck on the
table and a goal point — and differ in what to do with it, so the language instruction is what
tells the policy which behaviour is wanted (the state helps only partly: push's goal lies on the
table, while reach and pick-place both draw theirs in the air, from overlapping ranges):

  1 reach        move the gripper to the goal                     (skill: reach)
  2 push         slide the puck along the table to the goal       (reach + push)
  3 pick-place   grasp the puck and carry it to the goal in the air (reach + grasp + carry)
  4 drawer-close push an open drawer shut                          (reach + push, new scene)

Training stage 2 (push) after stage 1 (reach) on the same observations teaches a different action
for the same situation: a model without replay drifts towards pushing and forgets to reach; stage
3 shares the reach-to-puck phase with stage 2 but then lifts instead of sliding. Task 4 adds a new
scene that reuses the pushing skill, so the benchmark also shows transfer, not only conflict.

Observations are Meta-World's full 39-dim vector with the goal visible (hand xyz, gripper
opening, object poses, the previous frame, goal xyz) plus one 64x64 RGB camera; actions are
the 4-dim end-effector delta + gripper command in [-1, 1]. The compact state (``--full``: the
pretrained SmolVLA takes at most 32 state values) drops the previous frame: 21 values.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from functools import cache

# MuJoCo picks its GL backend at import time: software rendering (no display, no GPU).
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import numpy as np  # noqa: E402

CAMERA_KEY = "observation.images.corner"
STATE_DIM = 39
# Meta-World's observation without the previous frame (values 18-35): hand, gripper, 2 object poses, goal.
COMPACT_STATE = np.r_[0:18, 36:39]
ACTION_DIM = 4
FPS = 80  # Meta-World's control rate


@dataclass(frozen=True)
class SimTask:
    id: int
    name: str
    env_name: str
    instruction: str
    # Closed-loop step limit (the scripted expert needs 45-95 steps on these tasks).
    max_steps: int

    @property
    def dirname(self) -> str:
        return f"task{self.id}_{self.name}"


SIM_TASKS = (
    SimTask(1, "reach", "reach-v3", "Move the gripper to the goal position.", 150),
    SimTask(2, "push", "push-v3", "Push the puck along the table to the goal.", 150),
    SimTask(3, "pick_place", "pick-place-v3", "Pick up the puck and place it at the goal.", 150),
    SimTask(4, "drawer_close", "drawer-close-v3", "Push the drawer closed.", 150),
)


@cache
def _benchmark(env_name: str):
    """Meta-World's MT1 set-up of a task (costs seconds: it builds an env and samples 50 tasks), made once."""
    import metaworld  # heavy import (MuJoCo), only when an env is built

    return metaworld.MT1(env_name, seed=0)


class SimEnv:
    """One Meta-World task with seeded resets, the goal in the observation and a rendered camera."""

    def __init__(self, task: SimTask, image_size: int = 64, compact_state: bool = False):
        self.task = task
        self.compact_state = compact_state
        benchmark = _benchmark(task.env_name)
        self._env = benchmark.train_classes[task.env_name](
            render_mode="rgb_array", camera_name="corner2", width=image_size, height=image_size
        )
        self._env.set_task(benchmark.train_tasks[0])
        self._env._freeze_rand_vec = False  # a new object/goal position at every reset ...
        self._env.seeded_rand_vec = True  # ... drawn from the seed given to reset()
        self._env._partially_observable = False  # the goal position is part of the state
        self._env.model.cam_pos[2] = [0.75, 0.075, 0.7]  # corner2 moved closer, as lerobot's MetaworldEnv does
        self._disable_shadows_and_reflections()
        self.obs: np.ndarray | None = None

    @property
    def state(self) -> np.ndarray:
        """The policy's state input: the full observation, or its compact part."""
        return self.obs[COMPACT_STATE] if self.compact_state else self.obs

    def _disable_shadows_and_reflections(self) -> None:
        # Software rendering of the shadow and reflection passes takes ~85% of a frame (150 ms -> 23 ms at 64x64).
        import mujoco

        self._viewer = self._env.mujoco_renderer._get_viewer("rgb_array")
        scene = self._viewer.scn
        scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    def reset(self, seed: int) -> np.ndarray:
        self._env.seed(seed)
        obs, _ = self._env.reset()
        self.obs = obs.astype(np.float32)
        return self.obs

    def step(self, action: np.ndarray) -> bool:
        """Apply one action; True when the task is solved."""
        obs, _, _, _, info = self._env.step(np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0))
        self.obs = obs.astype(np.float32)
        return bool(info["success"])

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8; corner2 renders upside down and mirrored, so flip both axes."""
        # Each env owns a GL context; another env freeing its own leaves none current (black frames).
        self._viewer.make_context_current()
        return np.ascontiguousarray(np.flip(self._env.render(), (0, 1)))

    def expert_action(self) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Constant(s) may be too high": the env clips anyway
            action = self._expert().get_action(self.obs.astype(np.float64))
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _expert(self):
        if not hasattr(self, "_policy"):
            from lerobot.envs.metaworld import TASK_POLICY_MAPPING

            self._policy = TASK_POLICY_MAPPING[self.task.env_name]()
        return self._policy

    def close(self) -> None:
        self._env.close()
