"""Held-out validation episodes per task: fixed by seed, disjoint from training, saved with the run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kuavo_train.errors import KuavoError


@dataclass(frozen=True)
class EpisodeSplit:
    train: list[int]
    val: list[int]


def split_episodes(episodes: list[int], num_val: int, seed: int, task_id: int) -> EpisodeSplit:
    """Draw ``num_val`` validation episodes with a generator seeded by (seed, task_id)."""
    episodes = sorted(int(e) for e in episodes)
    if len(episodes) < num_val + 1:
        raise KuavoError(
            f"task {task_id} has {len(episodes)} episodes but training.validation_episodes={num_val} are held out; "
            f"lower training.validation_episodes or add episodes"
        )
    rng = np.random.default_rng([seed, task_id])
    val = sorted(int(e) for e in rng.choice(episodes, size=num_val, replace=False))
    return EpisodeSplit(train=[e for e in episodes if e not in set(val)], val=val)


def load_or_create_splits(path: Path, wanted: dict[int, tuple[list[int], int]], seed: int) -> dict[int, EpisodeSplit]:
    """Reuse the splits saved at ``path``; create the ones that are missing (then save)."""
    saved = json.loads(path.read_text()) if path.is_file() else {}
    splits = {}
    for task_id, (episodes, num_val) in wanted.items():
        entry = saved.get(str(task_id))
        if entry is not None:
            if set(entry["train"]) | set(entry["val"]) != set(episodes):
                raise KuavoError(
                    f"{path}: the saved split of task {task_id} no longer matches its episodes (the data or "
                    f"episodes_to_use changed since stage 1); use a new training.output_directory for the new data"
                )
            splits[task_id] = EpisodeSplit(train=entry["train"], val=entry["val"])
        else:
            splits[task_id] = split_episodes(episodes, num_val, seed, task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {str(k): {"train": v.train, "val": v.val} for k, v in splits.items()}
    if payload != saved:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(path)
    return splits
