"""The multi-source sampler: proportions per strategy, one source per batch, deterministic epochs."""

from __future__ import annotations

from collections import Counter

import pytest

from tunelab.training.mixing import TaskMixture, mixing_weights


def flat(*sizes):
    """Sources of equal-length examples (plain shuffled batches)."""
    return [[1] * n for n in sizes]


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
    sampler = TaskMixture(flat(*sizes), batch_size=10, seed=1, strategy=strategy, tau=tau)
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
    a, b = TaskMixture(flat(50, 30), 8, seed=3), TaskMixture(flat(50, 30), 8, seed=3)
    assert a.batches(2) == b.batches(2)
    assert a.batches(0) != a.batches(1)


def test_round_robin_alternates_and_covers_each_example_once():
    plan = TaskMixture(flat(20, 20), 5, seed=0, strategy="round_robin").batches(0)
    assert [source_of(b, [20, 20]) for b in plan] == [0, 1] * 4
    seen = Counter(i for b in plan for i in b)
    assert set(seen) == set(range(40)) and set(seen.values()) == {1}


def test_proportional_gives_each_source_its_single_run_batches_once_per_epoch():
    """Proportional mixing = each source's own epoch (the batches the loop's LengthGrouped sampler gives a run on that
    source alone, same seed), interleaved: a multi-task run sees exactly each task's single-task batches."""
    import random

    from tunelab.training.sampler import LengthGrouped

    rng = random.Random(0)
    lengths = [[rng.randint(1, 60) for _ in range(103)], [rng.randint(1, 60) for _ in range(41)]]
    mix = TaskMixture(lengths, 8, seed=5)
    for epoch in (0, 1):
        plan = mix.batches(epoch)
        assert len(plan) == mix.steps_per_epoch() == 13 + 6
        sources = [source_of(b, [103, 41]) for b in plan]
        assert sources.count(0) == 13 and sources.count(1) == 6
        assert sources[:13] != [0] * 13  # interleaved, not one task after the other
        for src, start in ((0, 0), (1, 103)):
            own = [[i - start for i in b] for b, s in zip(plan, sources) if s == src]
            assert own == LengthGrouped(lengths[src], 8, 5).batches(epoch)
    # without length grouping (all lengths equal): the single run's batches as sets, in another order
    ungrouped = TaskMixture(flat(103, 41), 8, seed=5).batches(0)
    own = sorted(sorted(b) for b in ungrouped if b[0] < 103)
    assert own == sorted(sorted(b) for b in LengthGrouped([1] * 103, 8, 5, group=False).batches(0))


def test_a_source_that_runs_out_starts_another_pass_with_another_order():
    plan = TaskMixture(flat(4, 40), 4, seed=0, strategy="round_robin").batches(0)  # source 0 has 1 batch, drawn 6 times
    firsts = [tuple(b) for b in plan if b[0] < 4]
    assert len(firsts) == 6 and all(sorted(b) == [0, 1, 2, 3] for b in firsts) and len(set(firsts)) > 1


def test_weighted_mixture_uses_the_given_weights_and_checks_them():
    from tunelab.training.mixing import TaskMixture

    mix = TaskMixture.weighted(flat(10, 30), 4, 0, [1.0, 3.0])
    assert mix.weights == [0.25, 0.75] and mix.steps_per_epoch() == 3 + 8
    assert mix.batches(1) == TaskMixture.weighted(flat(10, 30), 4, 0, [2.0, 6.0]).batches(1)  # only the ratio counts
    for bad in ([1.0], [1.0, 0.0]):
        with pytest.raises(ValueError, match="one positive weight per source"):
            TaskMixture.weighted(flat(10, 30), 4, 0, bad)
