"""Closed-loop success rate of a kuavo_train checkpoint on a sim task.

The policy is the deployable one: :class:`SmolVLAPolicyWrapper` on the stage's ``best/`` dir, fed
raw observations (uint8 camera image, 39-dim state, the task's instruction). Episodes run as one
batch (one env per evaluation seed); every ``n_action_steps`` steps the policy predicts a chunk
for all unfinished episodes, which is then executed open loop, as lerobot's action queue does.
Evaluation seeds (``EVAL_SEED_OFFSET + i``) never overlap the demonstration seeds; the flow-matching
noise comes from one generator seeded per task and drawn for the still-running episodes at every
chunk, so a rerun of the same command gives the same numbers. For the tasks of the language pair
(``tasks.LANGUAGE_PAIR``) each episode also records whether the policy did the other task's
behaviour instead (``tasks.OTHER_BEHAVIOUR``, tested on every step).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.sim.tasks import CAMERA_KEY, OTHER_BEHAVIOUR, SimEnv, SimTask

EVAL_SEED_OFFSET = 1_000_000


@dataclass
class EpisodeOutcome:
    seed: int
    success: bool
    steps: int
    # Language pair tasks only: the other task's behaviour was seen (None for the other tasks).
    other_behaviour: bool | None = None


def evaluate_policy(
    policy,
    task: SimTask,
    episodes: int,
    image_size: int = 64,
    max_steps: int | None = None,
    seed: int = 0,
    compact_state: bool = False,
) -> list[EpisodeOutcome]:
    """Run ``episodes`` closed-loop episodes of ``task``; ``policy`` is a SmolVLAPolicyWrapper."""
    max_steps = max_steps or task.max_steps
    seeds = [EVAL_SEED_OFFSET + seed * 10_000 + i for i in range(episodes)]
    envs = [SimEnv(task, image_size, compact_state) for _ in seeds]
    for env, env_seed in zip(envs, seeds, strict=True):
        env.reset(env_seed)
    done = [False] * len(envs)
    steps = [max_steps] * len(envs)
    generator = torch.Generator().manual_seed(seed * 100 + task.id)
    other_test = OTHER_BEHAVIOUR.get(task.name)
    other = [False] * len(envs)
    t = 0
    while t < max_steps and not all(done):
        active = [i for i, d in enumerate(done) if not d]
        chunk = _predict_chunk(policy, [envs[i] for i in active], task, generator)
        for j, i in enumerate(active):
            for k in range(min(chunk.shape[1], max_steps - t)):
                solved = envs[i].step(chunk[j, k])
                if other_test is not None:
                    other[i] = other[i] or other_test(envs[i].obs)
                if solved:
                    done[i], steps[i] = True, t + k + 1
                    break
        t += chunk.shape[1]
    for env in envs:
        env.close()
    return [
        EpisodeOutcome(s, d, n, o if other_test is not None else None)
        for s, d, n, o in zip(seeds, done, steps, other, strict=True)
    ]


def _predict_chunk(policy, envs: list[SimEnv], task: SimTask, generator: torch.Generator) -> np.ndarray:
    batch = {
        CAMERA_KEY: np.stack([env.render() for env in envs]),
        "observation.state": np.stack([env.state for env in envs]),
        "task": [task.instruction] * len(envs),
    }
    noise = torch.randn(policy.noise_shape(len(envs)), generator=generator)
    return policy.predict_action_chunk(batch, noise=noise).cpu().numpy()


def success_rate(outcomes: list[EpisodeOutcome]) -> float:
    return float(np.mean([o.success for o in outcomes])) if outcomes else float("nan")


def load_policy(checkpoint: Path, device: str = "auto"):
    from kuavo_train.wrapper.policy.smolvla.SmolVLAPolicyWrapper import SmolVLAPolicyWrapper

    return SmolVLAPolicyWrapper.from_pretrained(checkpoint, device=device)
