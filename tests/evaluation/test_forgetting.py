import pytest

from kuavo_train.config.schema import CriteriaConfig
from kuavo_train.evaluation.forgetting import (
    FORGOTTEN,
    MILD,
    WELL_RETAINED,
    curriculum_metrics,
    forgetting_analysis,
    success_criteria,
)

CRITERIA = CriteriaConfig()


@pytest.mark.parametrize(
    ("loss", "reference", "label"),
    [(0.58, 0.55, WELL_RETAINED), (0.69, 0.40, MILD), (0.75, 0.70, FORGOTTEN)],
)
def test_verdicts_at_stage_2(loss, reference, label):
    lines = []
    verdicts = forgetting_analysis({1: loss, 2: 0.45}, 2, {1: reference}, 2, CRITERIA, echo=lines.append)
    assert [v.label for v in verdicts] == [label]
    assert lines[0] == ("✅ Forgetting Analysis:" if label == WELL_RETAINED else "⚠️  Forgetting Analysis:")
    assert lines[1].startswith(f"  Task 1: {label} (loss={loss:.4f}")
    assert ("sequential.stage2_replay.task1" in "\n".join(lines)) == (label == FORGOTTEN)


def test_validation_block_shape(capsys):
    from kuavo_train.evaluation import validate

    class FakeLoader(list):
        pass

    calls = iter([0.58, 0.45])
    original = validate.validation_loss
    validate.validation_loss = lambda *args, **kwargs: next(calls)
    try:
        validate.validate_tasks(None, None, {1: FakeLoader(), 2: FakeLoader()}, device=None)
    finally:
        validate.validation_loss = original
    assert capsys.readouterr().out.splitlines() == [
        "🔍 Multi-Task Validation (Tasks 1-2)",
        "📊 Validating Task 1...",
        "  Task 1 Validation Loss: 0.5800",
        "📊 Validating Task 2...",
        "  Task 2 Validation Loss: 0.4500",
    ]


def test_success_criteria_per_stage():
    rows = success_criteria({1: 0.75, 2: 0.4, 3: 0.3}, 3, 3, CRITERIA)
    assert [(r.task_id, r.role, r.limit, r.passed) for r in rows] == [
        (3, "current", 0.5, True),
        (1, "earlier", 0.8, True),
        (2, "earlier", 0.8, True),
    ]
    assert not success_criteria({1: 0.75, 2: 0.6}, 2, 2, CRITERIA)[1].passed


def test_curriculum_metrics_bwt_and_forgetting():
    matrix = {1: {1: 0.4, 2: 2.0}, 2: {1: 0.6, 2: 0.3}, 3: {1: 0.5, 2: 0.5, 3: 0.2}}
    metrics = curriculum_metrics(matrix, [1, 2, 3])
    assert metrics["average_loss"][2] == pytest.approx(0.45)
    assert metrics["bwt"][2] == pytest.approx(0.2)
    assert metrics["bwt"][3] == pytest.approx(((0.5 - 0.4) + (0.5 - 0.3)) / 2)
    assert metrics["forgetting"][3] == {1: pytest.approx(0.1), 2: pytest.approx(0.2)}
