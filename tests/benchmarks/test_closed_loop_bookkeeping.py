"""The closed-loop scorer's chunk bookkeeping, on fake envs that solve the task at a known step."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.sim import closed_loop
from benchmarks.sim.tasks import SIM_TASKS


class FakeEnv:
    """Solved on the `solve_at`-th step after reset; counts steps and renders."""

    solve_at: dict[int, int] = {}

    def __init__(self, task, image_size, compact_state=False):
        self.obs = np.zeros(39, dtype=np.float32)
        self.steps = self.renders = 0

    @property
    def state(self):
        return self.obs

    def reset(self, seed):
        self.target = self.solve_at[seed - closed_loop.EVAL_SEED_OFFSET]
        return self.obs

    def step(self, action):
        self.steps += 1
        return self.steps == self.target

    def render(self):
        self.renders += 1
        return np.zeros((8, 8, 3), dtype=np.uint8)

    def close(self):
        pass


class ChunkPolicy:
    def __init__(self, chunk):
        self.chunk, self.batch_sizes = chunk, []

    def noise_shape(self, batch_size):
        return (batch_size, self.chunk, 4)

    def predict_action_chunk(self, batch, noise=None):
        self.batch_sizes.append(len(batch["task"]))
        return torch.zeros(len(batch["task"]), self.chunk, 4)


def test_episodes_ending_mid_chunk_stop_there_and_leave_the_batch(monkeypatch):
    monkeypatch.setattr(closed_loop, "SimEnv", FakeEnv)
    FakeEnv.solve_at = {0: 3, 1: 9, 2: 1000}
    policy = ChunkPolicy(chunk=4)
    outcomes = closed_loop.evaluate_policy(policy, SIM_TASKS[0], episodes=3, max_steps=14)
    assert [(o.success, o.steps) for o in outcomes] == [(True, 3), (True, 9), (False, 14)]
    # chunks at t=0, 4, 8, 12: episode 0 leaves after the first, episode 1 after the third
    assert policy.batch_sizes == [3, 2, 2, 1]
