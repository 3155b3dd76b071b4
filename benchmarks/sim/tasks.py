"""The Meta-World tasks of the closed-loop benchmark and the environment they run in.

Two sets, disjoint (as lerobot/smolvla_base never saw the Kuavo tasks):

PRETRAIN_TASKS (8): the pretrained base's tasks (benchmarks/sim/pretrain.py), trained multi-task
  once: push, drawer-close, button-press-topdown, window-open, door-open, plate-slide,
  handle-press, coffee-button. They teach the arm, the camera and the common skills (reach an
  object, push, press, pull a handle) without any curriculum task.

SIM_TASKS (4), the curriculum, in order; each one new to the base:
  1 reach        move the gripper to the goal, leave the puck    (the puck scene)
  2 faucet-open  rotate a faucet handle to the open side         (a new scene)
  3 pick-place   grasp the puck and carry it to the goal in the air (the puck scene again)
  4 drawer-open  grasp a drawer's handle and pull it out         (the drawer scene; the base knows
                                                                  only pushing it shut)

Why these: reach and pick-place share ONE scene and initial-state distribution (Meta-World draws
puck and goal from the same ranges; the same reset seed gives the same observation, tested), so
only the instruction tells them apart: the language-switching check (LANGUAGE_PAIR). Stage 3
teaches a different action for the same observations as stage 1, the hardest case for
forgetting. Faucet-open and drawer-open bring scenes of their own, and drawer-open is the reverse
of a pretraining skill (drawer-close), so the base's habit must be overridden by the instruction.
None of the four is solved by the base or by an earlier stage's model (docs/benchmarks.md shows
both); all four are solved by Meta-World's scripted experts in 40-95 steps.

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
    SimTask(2, "faucet_open", "faucet-open-v3", "Turn the faucet handle to open the faucet.", 150),
    SimTask(3, "pick_place", "pick-place-v3", "Pick up the puck and place it at the goal.", 150),
    SimTask(4, "drawer_open", "drawer-open-v3", "Pull the drawer open.", 150),
)
PRETRAIN_TASKS = (
    SimTask(1, "push", "push-v3", "Push the puck along the table to the goal.", 150),
    SimTask(2, "drawer_close", "drawer-close-v3", "Push the drawer closed.", 150),
    SimTask(3, "button_press_topdown", "button-press-topdown-v3", "Press the button down from above.", 150),
    SimTask(4, "window_open", "window-open-v3", "Slide the window open.", 150),
    SimTask(5, "door_open", "door-open-v3", "Open the door by its handle.", 150),
    SimTask(6, "plate_slide", "plate-slide-v3", "Slide the plate into the goal.", 150),
    SimTask(7, "handle_press", "handle-press-v3", "Press the handle down.", 150),
    SimTask(8, "coffee_button", "coffee-button-v3", "Press the button on the coffee machine.", 150),
)


def _hand_at_goal(obs: np.ndarray) -> bool:
    """reach-v3's success test (tcp within 5 cm of the goal), from the observation."""
    return bool(np.linalg.norm(obs[0:3] - obs[36:39]) <= 0.05)


def _puck_at_goal(obs: np.ndarray) -> bool:
    """pick-place-v3's success test (puck within 7 cm of the goal), from the observation."""
    return bool(np.linalg.norm(obs[4:7] - obs[36:39]) <= 0.07)


def _reached_without_the_puck(obs: np.ndarray) -> bool:
    return _hand_at_goal(obs) and not _puck_at_goal(obs)


# The two curriculum tasks of one scene, and for each the test of "did the OTHER task's behaviour instead",
# judged on every step's full observation: under the reach instruction, carrying the puck to the goal; under the
# pick-place instruction, bringing the empty gripper to the goal (the puck left behind).
LANGUAGE_PAIR = ("reach", "pick_place")
OTHER_BEHAVIOUR = {"reach": _puck_at_goal, "pick_place": _reached_without_the_puck}


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
