"""The multi-source sampler: proportions per strategy, one source per batch, deterministic epochs."""

from __future__ import annotations

from collections import Counter

import pytest

from tunelab.training.mixing import TaskMixture, mixing_weights


def test_mixing_weights_match_hand_computation():
    assert mixing_weights([300, 100], "proportional") == pytest.approx([0.75, 0.25])
    # tau = 2: sqrt(300) : sqrt(100) = 17.32 : 10
    assert mixing_weights([300, 100], "temperature", 2.0) == pytest.approx([17.3205 / 27.3205, 10 / 27.3205], rel=1e-4)
    assert mixing_weights([300, 100], "round_robin") == [0.5, 0.5]
    with pytest.raises(ValueError, match="proportional, temperature, round_robin"):
        mixing_weights([1, 2], "uniform")
    with pytest.raises(ValueError, match="at least one example"):
        mixing_weights([0, 2], "proportional")


def source_of(batch, sizes):
    first = batch[0]
    return 0 if first < sizes[0] else 1


@pytest.mark.parametrize(
    "strategy, tau, want", [("proportional", 1.0, 0.8), ("temperature", 3.0, None), ("round_robin", 1.0, 0.5)]
)
def test_batch_proportions_follow_the_strategy(strategy, tau, want):
    sizes = [4000, 1000]
    sampler = TaskMixture(sizes, batch_size=10, seed=1, strategy=strategy, tau=tau)
    counts = Counter()
    for epoch in range(4):
        plan = sampler.batches(epoch)
        assert len(plan) == sampler.steps_per_epoch() == 500
        for batch in plan:
            src = source_of(batch, sizes)
            assert all((i < sizes[0]) == (src == 0) for i in batch), "a batch mixes sources"
            assert all(0 <= i < sum(sizes) for i in batch)
            counts[src] += 1
    share = counts[0] / sum(counts.values())
    expected = want if want is not None else mixing_weights(sizes, "temperature", tau)[0]
    assert share == pytest.approx(expected, abs=0.03)


def test_plans_are_deterministic_per_epoch_and_differ_between_epochs():
    a, b = TaskMixture([50, 30], 8, seed=3), TaskMixture([50, 30], 8, seed=3)
    assert a.batches(2) == b.batches(2)
    assert a.batches(0) != a.batches(1)


def test_round_robin_alternates_and_proportional_covers_each_example_about_once():
    plan = TaskMixture([20, 20], 5, seed=0, strategy="round_robin").batches(0)
    assert [source_of(b, [20, 20]) for b in plan] == [0, 1] * 4
    seen = Counter(i for b in plan for i in b)
    assert set(seen) == set(range(40)) and set(seen.values()) == {1}


def test_weighted_mixture_uses_the_given_weights_and_checks_them():
    from tunelab.training.mixing import TaskMixture

    mix = TaskMixture.weighted([10, 30], 4, 0, [1.0, 3.0])
    assert mix.weights == [0.25, 0.75] and mix.steps_per_epoch() == 3 + 8
    assert mix.batches(1) == TaskMixture.weighted([10, 30], 4, 0, [2.0, 6.0]).batches(1)  # only the ratio counts
    for bad in ([1.0], [1.0, 0.0]):
        with pytest.raises(ValueError, match="one positive weight per source"):
            TaskMixture.weighted([10, 30], 4, 0, bad)
