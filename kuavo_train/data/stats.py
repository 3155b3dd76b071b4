"""Normalization statistics: exact per-task moments, merged into ONE set for the whole curriculum.

Per-task normalization wrecks continual learning (SPEC 3b), so stats are computed once over all
curriculum tasks and reused by every stage. A task contributes only to the dims it really has;
dims that no task has stay identity (mean 0, std 1, min -1, max 1).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from kuavo_train.data.constants import ACTION, STATE
from kuavo_train.errors import KuavoError

VECTOR_KEYS = (STATE, ACTION)


@dataclass
class Moments:
    """Sufficient statistics of a (N, D) array: exact to merge across tasks."""

    count: int
    mean: np.ndarray  # (D,)
    m2: np.ndarray  # (D,) sum of squared deviations from the mean
    min: np.ndarray  # (D,)
    max: np.ndarray  # (D,)

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        values = values.astype(np.float64)
        mean = values.mean(axis=0)
        return cls(len(values), mean, ((values - mean) ** 2).sum(axis=0), values.min(axis=0), values.max(axis=0))


def merge_moments(parts: list[Moments], dim: int) -> dict[str, np.ndarray]:
    """Merge moments of vectors of possibly different sizes into ``dim`` dims (Chan et al.'s formula).

    Part i covers dims ``[0, len(part.mean))``. Returns per-dim mean, std, min, max and count;
    a dim no part covers gets identity stats (mean 0, std 1, min -1, max 1, count 0).
    """
    count = np.zeros(dim)
    mean = np.zeros(dim)
    m2 = np.zeros(dim)
    low = np.full(dim, np.inf)
    high = np.full(dim, -np.inf)
    for part in parts:
        d = len(part.mean)
        n_a, n_b = count[:d].copy(), part.count
        total = n_a + n_b
        delta = part.mean - mean[:d]
        mean[:d] += delta * n_b / total
        m2[:d] += part.m2 + delta**2 * n_a * n_b / total
        count[:d] = total
        low[:d] = np.minimum(low[:d], part.min)
        high[:d] = np.maximum(high[:d], part.max)
    covered = count > 0
    std = np.where(covered, np.sqrt(m2 / np.maximum(count, 1)), 1.0)
    return {
        "mean": np.where(covered, mean, 0.0),
        "std": std,
        "min": np.where(covered, low, -1.0),
        "max": np.where(covered, high, 1.0),
        "count": count,
    }


def dataset_moments(v30_root: Path, episodes: list[int] | None = None) -> dict[str, Moments]:
    """Exact moments of state and action over the frames of ``episodes`` (None = all)."""
    files = sorted((v30_root / "data").glob("*/*.parquet"))
    table = pa.concat_tables([pq.read_table(f, columns=[*VECTOR_KEYS, "episode_index"]) for f in files])
    episode_index = table.column("episode_index").to_numpy()
    keep = np.ones(len(episode_index), dtype=bool) if episodes is None else np.isin(episode_index, episodes)
    result = {}
    for key in VECTOR_KEYS:
        values = np.stack(table.column(key).to_numpy(zero_copy_only=False))[keep]
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).any(axis=1).sum())
            raise KuavoError(
                f"{v30_root}: '{key}' has {bad} frames with NaN/inf; "
                "run `kuavo-train check-data` on the source and fix or drop those episodes"
            )
        result[key] = Moments.of(values)
    return result


def merged_stats(
    per_task: list[dict[str, Moments]], state_dim: int, action_dim: int
) -> dict[str, dict[str, np.ndarray]]:
    """One lerobot-style stats dict ({key: {mean, std, min, max, count}}) over all tasks."""
    stats = {}
    for key, dim in ((STATE, state_dim), (ACTION, action_dim)):
        merged = merge_moments([moments[key] for moments in per_task], dim)
        stats[key] = {
            "mean": merged["mean"].astype(np.float32),
            # A dim (near) constant in the training data gets unit scale, not a blow-up at run time.
            "std": np.where(merged["std"] < 1e-4, 1.0, merged["std"]).astype(np.float32),
            "min": merged["min"].astype(np.float32),
            "max": merged["max"].astype(np.float32),
            "count": np.array([int(merged["count"].max())]),
        }
    return stats


def stats_to_tensors(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, torch.Tensor]]:
    return {key: {name: torch.as_tensor(value) for name, value in group.items()} for key, group in stats.items()}


def save_stats(stats: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    payload = {key: {name: np.asarray(v).tolist() for name, v in group.items()} for key, group in stats.items()}
    path.write_text(json.dumps(payload, indent=2))


def load_stats(path: Path) -> dict[str, dict[str, np.ndarray]]:
    if not path.is_file():
        raise KuavoError(f"normalization stats {path} are missing; rerun stage 1 (it computes them)")
    raw = json.loads(path.read_text())
    return {key: {name: np.asarray(v, dtype=np.float32) for name, v in group.items()} for key, group in raw.items()}


def stats_hash(stats: dict[str, dict[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for key in sorted(stats):
        for name in ("mean", "std", "min", "max"):
            digest.update(np.asarray(stats[key][name], dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]
