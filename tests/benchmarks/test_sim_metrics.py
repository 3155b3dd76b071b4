"""Success-matrix metrics on hand-computed matrices."""

from __future__ import annotations

import pytest

from benchmarks.sim.metrics import backward_transfer, final_average, forgetting

ORDER = [1, 2, 3]
# S[stage][task]: task 1 learned to 0.8 then decays to 0.4; task 2 peaks at 0.9 then 0.6.
MATRIX = {
    1: {1: 0.8, 2: 0.0, 3: 0.0},
    2: {1: 0.6, 2: 0.9, 3: 0.1},
    3: {1: 0.4, 2: 0.6, 3: 0.7},
}


def test_final_average_is_the_last_row_mean():
    assert final_average(MATRIX) == pytest.approx((0.4 + 0.6 + 0.7) / 3)


def test_bwt_is_negative_when_earlier_tasks_are_forgotten():
    assert backward_transfer(MATRIX, ORDER) == pytest.approx(((0.4 - 0.8) + (0.6 - 0.9)) / 2)


def test_bwt_needs_every_stage_row():
    assert backward_transfer({3: MATRIX[3]}, ORDER) is None


def test_forgetting_is_the_drop_from_the_best_earlier_stage():
    assert forgetting(MATRIX, ORDER) == pytest.approx({1: 0.8 - 0.4, 2: 0.9 - 0.6})
    assert forgetting({3: MATRIX[3]}, ORDER) == {}
