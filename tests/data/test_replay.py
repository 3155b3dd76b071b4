from collections import Counter

import pytest

from kuavo_train.data.replay import ReplayMixSampler, samples_per_epoch, task_counts
from kuavo_train.data.splits import load_or_create_splits, split_episodes
from kuavo_train.errors import KuavoError

SIZES = {1: 300, 2: 500, 3: 120, 4: 800}
MIX = {1: 0.1, 2: 0.1, 3: 0.2, 4: 0.6}


def task_of(index: int) -> int:
    offset = 0
    for task, size in SIZES.items():
        if index < offset + size:
            return task
        offset += size
    raise AssertionError(index)


def test_epoch_length_is_current_frames_over_share():
    sampler = ReplayMixSampler(SIZES, MIX, current_task=4, seed=0)
    assert len(sampler) == samples_per_epoch(800, 0.6) == 1334


@pytest.mark.parametrize("total", [400, 5000])  # shorter than one pass over the current task, and several passes
def test_a_fixed_epoch_keeps_the_shares_and_draws_without_repeats_within_a_pass(total):
    sampler = ReplayMixSampler(SIZES, MIX, current_task=4, seed=3, total=total)
    stream = list(sampler)
    assert len(stream) == len(sampler) == total
    counts = Counter(task_of(i) for i in stream)
    assert counts == task_counts(total, MIX)
    current = Counter(i for i in stream if task_of(i) == 4)
    assert max(current.values()) == -(-counts[4] // 800)  # each frame once per pass through the task


@pytest.mark.parametrize("epoch", [0, 1, 7])
def test_measured_shares_match_the_config(epoch):
    sampler = ReplayMixSampler(SIZES, MIX, current_task=4, seed=3)
    sampler.set_epoch(epoch)
    counts = Counter(task_of(i) for i in sampler)
    for task, share in MIX.items():
        assert abs(counts[task] / len(sampler) - share) < 0.01


def test_current_task_frames_each_seen_once_per_epoch():
    sampler = ReplayMixSampler(SIZES, MIX, current_task=4, seed=3)
    current = [i for i in sampler if task_of(i) == 4]
    assert len(set(current)) == 800


def test_order_is_deterministic_and_changes_per_epoch():
    a, b = ReplayMixSampler(SIZES, MIX, 4, seed=1), ReplayMixSampler(SIZES, MIX, 4, seed=1)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_ranks_split_the_stream_without_overlap():
    ranks = [ReplayMixSampler(SIZES, MIX, 4, seed=1, num_replicas=2, rank=r) for r in range(2)]
    streams = [list(r) for r in ranks]
    full = ReplayMixSampler(SIZES, MIX, 4, seed=1).epoch_indices().tolist()
    assert streams[0] == full[0 : 2 * len(ranks[0]) : 2] and streams[1] == full[1 : 2 * len(ranks[1]) : 2]


def test_task_counts_are_exact():
    assert sum(task_counts(1001, MIX).values()) == 1001


def test_validation_split_is_disjoint_fixed_and_saved(tmp_path):
    split = split_episodes(list(range(20)), 4, seed=42, task_id=2)
    assert len(split.val) == 4 and not set(split.val) & set(split.train)
    assert split == split_episodes(list(range(20)), 4, seed=42, task_id=2)
    saved = load_or_create_splits(tmp_path / "splits.json", {2: (list(range(20)), 4)}, seed=42)
    again = load_or_create_splits(tmp_path / "splits.json", {2: (list(range(20)), 4)}, seed=7)
    assert saved == again  # reused from the file, not redrawn


def test_too_few_episodes_for_validation():
    with pytest.raises(KuavoError, match="validation_episodes"):
        split_episodes([0, 1], 2, seed=0, task_id=1)
