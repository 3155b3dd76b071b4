"""Forgetting verdicts, success criteria (SPEC section 6) and continual-learning metrics.

Definitions (docs/evaluation.md): R[s][k] = validation loss on task k of stage s's best model.
* verdict for earlier task k at stage s: ratio = R_now[k] / R[k][k];
  ✅ Well Retained if ratio <= retained_ratio and loss <= the stage's limit for earlier tasks,
  ❌ Forgotten if loss > that limit, ⚠️ Mild Forgetting otherwise.
* average loss after stage s: mean_k<=s R[s][k].
* BWT after stage s (losses, so positive = forgetting): mean_k<s (R[s][k] - R[k][k]).
* forgetting of task k after stage s: R[s][k] - min_{k<=j<s} R[j][k] (> 0 = worse than its best so far).
"""

from __future__ import annotations

from dataclasses import dataclass

from kuavo_train.config.schema import CriteriaConfig

WELL_RETAINED = "✅ Well Retained"
MILD = "⚠️ Mild Forgetting"
FORGOTTEN = "❌ Forgotten"


@dataclass(frozen=True)
class Verdict:
    task_id: int
    loss: float
    reference: float | None
    label: str

    @property
    def ratio(self) -> float | None:
        return None if not self.reference else self.loss / self.reference


def previous_task_limit(criteria: CriteriaConfig, stage: int) -> float | None:
    return criteria.previous_task_max_loss.get(stage)


def forgetting_verdict(
    task_id: int, loss: float, reference: float | None, limit: float | None, criteria: CriteriaConfig
) -> Verdict:
    if limit is not None and loss > limit:
        return Verdict(task_id, loss, reference, FORGOTTEN)
    ratio_ok = reference is None or reference <= 0 or loss / reference <= criteria.retained_ratio
    return Verdict(task_id, loss, reference, WELL_RETAINED if ratio_ok else MILD)


def forgetting_analysis(
    losses: dict[int, float],
    current_task: int,
    references: dict[int, float],
    stage: int,
    criteria: CriteriaConfig,
    echo=print,
) -> list[Verdict]:
    """Print and return a verdict per earlier task (``references``: loss at the end of its own stage)."""
    limit = previous_task_limit(criteria, stage)
    earlier = [task for task in sorted(losses) if task != current_task]
    if not earlier:
        return []
    verdicts = [forgetting_verdict(t, losses[t], references.get(t), limit, criteria) for t in earlier]
    # The warning sign only when something is not well retained (the header reads as an alarm otherwise).
    all_retained = all(v.label == WELL_RETAINED for v in verdicts)
    echo("✅ Forgetting Analysis:" if all_retained else "⚠️  Forgetting Analysis:")
    for task_id, verdict in zip(earlier, verdicts, strict=True):
        ratio = f" - x{verdict.ratio:.2f} of its own-stage loss" if verdict.ratio is not None else ""
        echo(f"  Task {task_id}: {verdict.label} (loss={verdict.loss:.4f}){ratio}")
        if verdict.label == FORGOTTEN:
            echo(
                f"    -> raise its replay share, e.g. sequential.stage{stage}_replay.task{task_id}=<higher> "
                "(shares must sum to 1)"
            )
    return verdicts


@dataclass(frozen=True)
class Criterion:
    task_id: int
    role: str  # "current" or "earlier"
    loss: float
    limit: float

    @property
    def passed(self) -> bool:
        return self.loss < self.limit


def success_criteria(
    final_losses: dict[int, float], current_task: int, stage: int, criteria: CriteriaConfig
) -> list[Criterion]:
    rows = [Criterion(current_task, "current", final_losses[current_task], criteria.current_task_max_loss)]
    limit = previous_task_limit(criteria, stage)
    if limit is not None:
        rows += [Criterion(t, "earlier", loss, limit) for t, loss in sorted(final_losses.items()) if t != current_task]
    return rows


def format_criteria_table(rows: list[Criterion], stage: int) -> str:
    lines = [f"Success criteria, stage {stage}:", f"  {'task':<6}{'role':<9}{'loss':>9}  {'limit':>7}  result"]
    for row in rows:
        lines.append(
            f"  {row.task_id:<6}{row.role:<9}{row.loss:>9.4f}  < {row.limit:<5g}  "
            f"{'✅ pass' if row.passed else '❌ FAIL'}"
        )
    return "\n".join(lines)


def curriculum_metrics(matrix: dict[int, dict[int, float]], order: list[int]) -> dict:
    """Average loss, BWT and per-task forgetting from R[stage][task] (stages and tasks by curriculum position)."""
    metrics = {"average_loss": {}, "bwt": {}, "forgetting": {}}
    for s in range(1, len(order) + 1):
        row = matrix.get(s)
        if row is None:
            continue
        seen = order[:s]
        values = [row[t] for t in seen if t in row]
        metrics["average_loss"][s] = sum(values) / len(values) if values else None
        earlier = [
            order[k - 1] for k in range(1, s) if k in matrix and order[k - 1] in matrix[k] and order[k - 1] in row
        ]
        diffs = [row[t] - matrix[order.index(t) + 1][t] for t in earlier]
        metrics["bwt"][s] = sum(diffs) / len(diffs) if diffs else None
        metrics["forgetting"][s] = {
            t: row[t] - min(matrix[j][t] for j in range(order.index(t) + 1, s) if j in matrix and t in matrix[j])
            for t in earlier
        }
    return metrics
