import numpy as np

from kuavo_train.data.stats import Moments, merge_moments, merged_stats


def test_merge_is_exact_and_respects_each_tasks_dims():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 16)), rng.normal(3, 2, size=(50, 20))
    merged = merge_moments([Moments.of(a), Moments.of(b)], 24)
    both = np.concatenate([a, b[:, :16]])
    np.testing.assert_allclose(merged["mean"][:16], both.mean(0))
    np.testing.assert_allclose(merged["std"][:16], both.std(0))
    np.testing.assert_allclose(merged["min"][:16], both.min(0))
    np.testing.assert_allclose(merged["mean"][16:20], b[:, 16:].mean(0))  # only task b has these dims
    np.testing.assert_allclose(merged["std"][16:20], b[:, 16:].std(0))
    assert (merged["mean"][20:] == 0).all() and (merged["std"][20:] == 1).all()  # identity where nobody has data


def test_merged_stats_format():
    rng = np.random.default_rng(1)
    parts = [
        {"observation.state": Moments.of(rng.normal(size=(10, 16))), "action": Moments.of(rng.normal(size=(10, 20)))}
    ]
    stats = merged_stats(parts, 16, 20)
    assert stats["action"]["mean"].shape == (20,) and stats["action"]["std"].dtype == np.float32
