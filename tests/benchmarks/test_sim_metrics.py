"""Success-matrix metrics on hand-computed matrices."""

from __future__ import annotations

import pytest

from benchmarks.sim.metrics import backward_transfer, differs, final_average, forgetting, mean_ci, paired_difference

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


def test_mean_ci_is_the_t_interval_over_seeds():
    mean, half = mean_ci([0.8, 0.9, 1.0])
    # sd 0.1, sem 0.1 / sqrt(3), t(0.975, 2) = 4.303
    assert mean == pytest.approx(0.9) and half == pytest.approx(4.3027 * 0.1 / 3**0.5, rel=1e-3)
    assert mean_ci([0.5]) == (0.5, None)  # one seed: no interval
    assert mean_ci([0.7, 0.7, 0.7]) == (pytest.approx(0.7), pytest.approx(0.0))


def test_a_difference_is_called_only_when_its_paired_interval_excludes_zero():
    assert differs(paired_difference([0.9, 0.8, 0.85], [0.5, 0.6, 0.55]))
    assert not differs(paired_difference([0.9, 0.5, 0.7], [0.6, 0.8, 0.7]))
    assert not differs(paired_difference([0.9], [0.1]))  # one seed proves nothing
