"""Continual-learning metrics on a success matrix S[stage][task] (success rates in [0, 1]).

With T stages, S[i][j] is the success on task j of the model after stage i (1-based):
  average success  A = mean_j S[T][j]
  BWT              (1 / (T-1)) * sum_{j<T} (S[T][j] - S[j][j])   negative = forgetting
                   (Lopez-Paz & Ranzato 2017; the sign is opposite to the loss-based BWT of
                   curriculum_results.json, where positive = forgetting, because here higher is better)
  forgetting_j     max_{k_j <= i < T} S[i][j] - S[T][j] for j < T, k_j = the stage that trains j
                   (the best the task ever was after its own stage, minus where it ends; Chaudhry et al. 2018)
"""

from __future__ import annotations

Matrix = dict[int, dict[int, float]]


def final_average(matrix: Matrix) -> float:
    row = matrix[max(matrix)]
    return sum(row.values()) / len(row)


def backward_transfer(matrix: Matrix, order: list[int]) -> float | None:
    """Needs the diagonal: a sequential run's matrix, one row per stage in ``order``."""
    if len(order) < 2 or any(stage not in matrix for stage in range(1, len(order) + 1)):
        return None
    last = matrix[len(order)]
    deltas = [last[task] - matrix[stage][task] for stage, task in enumerate(order[:-1], start=1)]
    return sum(deltas) / len(deltas)


def forgetting(matrix: Matrix, order: list[int]) -> dict[int, float]:
    stages = sorted(matrix)
    if len(stages) < 2:
        return {}
    last = matrix[stages[-1]]
    return {
        task: max(matrix[s][task] for s in stages[:-1] if s >= k) - last[task]
        for k, task in enumerate(order[:-1], start=1)
    }


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float | None]:
    """Mean over training seeds and the half-width of its t confidence interval (None for one seed).

    The interval is over seeds (each seed's figure already averages its episodes), so it holds the
    spread of training runs and of the episodes each was scored on."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    spread = stats.sem(values)
    return mean, float(spread * stats.t.ppf((1 + confidence) / 2, n - 1)) if spread > 0 else 0.0


def paired_difference(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float | None]:
    """Mean and CI half-width of a - b over paired seeds (the same training seed and evaluation episodes)."""
    return mean_ci([x - y for x, y in zip(a, b, strict=True)], confidence)


def differs(difference: tuple[float, float | None]) -> bool:
    """True when the interval of a paired difference excludes 0: only then does the text call a difference.
    A zero-width interval (every seed gave the same difference) is degenerate, not certainty: never called."""
    mean, half = difference
    return half is not None and half > 0 and abs(mean) > half
