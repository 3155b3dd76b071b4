"""The scripted expert of the synthetic Kuavo tasks: goals, targets, actions and rollouts.

Every episode draws a goal ``g`` in ``[-1, 1]^2``; the arm moves to a task-specific target
``T1_k = L1 @ [R_k g, 1]``, closes the task's gripper(s), then carries to ``T2_k = L2 @ [R_k g, 1]``
(``R_k`` a task-specific rotation of the goal); the 4 walking dims of a 20-dim action are a task-specific
function of ``g`` and of the stage.  :func:`expert_action_chunk` gives the noise-free ground truth a policy
should predict; ``_rollout`` records a noisy episode (see ``docs/synthetic_data.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kuavo_train.errors import KuavoError

__all__ = [
    "ACTION_DIM_WALK",
    "CHUNK_HORIZON",
    "JOINT_NAMES",
    "STATE_DIM",
    "WALK_NAMES",
    "episode_conditions",
    "expert_action",
    "expert_action_chunk",
    "task_rotation",
    "task_targets",
]

# --------------------------------------------------------------------------------------------
# State / action layout (what the Kuavo exporter writes)
# --------------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class SyntheticTaskSpec:
    """One synthetic task: its id (selects the rule), its instruction, and its action size."""

    task_id: int  # 1..4 (any int >= 1 works; the rule is derived from it)
    instruction: str
    action_dim: int = STATE_DIM  # 20 for the walking task
