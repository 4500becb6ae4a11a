"""Demonstration selection and ordering, and contextual calibration: pure functions against hand computations."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from tunelab.prompting import calibration, demos

LABELS = ["a"] * 6 + ["b"] * 3 + ["c"] * 3


def test_sample_per_class_is_seeded_and_capped():
    chosen = demos.sample_per_class(LABELS, 2, seed=1)
    assert Counter(LABELS[i] for i in chosen) == {"a": 2, "b": 2, "c": 2}
    assert chosen == demos.sample_per_class(LABELS, 2, seed=1)
    assert chosen != demos.sample_per_class(LABELS, 2, seed=2) or chosen != demos.sample_per_class(LABELS, 2, seed=3)
    assert len(demos.sample_per_class(LABELS, 5, seed=0)) == 5 + 3 + 3  # b and c have only 3


def test_balanced_choice_spreads_k_over_classes():
    rng = random.Random(0)
    counts = Counter(LABELS[i] for i in demos.balanced_choice(LABELS, 6, rng))
    assert counts == {"a": 2, "b": 2, "c": 2}
    counts = Counter(LABELS[i] for i in demos.balanced_choice(LABELS, 7, rng))
    assert sorted(counts.values()) == [2, 2, 3]
    assert len(set(demos.random_choice(12, 5, rng))) == 5


def test_nearest_and_similarity_order():
    sims = [0.1, 0.9, 0.5, 0.7, -0.2]
    assert demos.nearest_choice(sims, 3) == [1, 3, 2]
    assert demos.order([1, 3, 2], "similarity", sims, random.Random(0)) == [2, 3, 1]  # most similar last
    shuffled = demos.order([1, 3, 2], "random", None, random.Random(0))
    assert sorted(shuffled) == [1, 2, 3]
    with pytest.raises(ValueError, match="similarities"):
        demos.select("nearest", LABELS, 3, random.Random(0))


def test_contextual_calibration_by_hand():
    # content-free inputs predict [0.8, 0.2] and [0.6, 0.4] -> p_cf = [0.7, 0.3]
    cf = torch.tensor([[0.8, 0.2], [0.6, 0.4]]).log()
    p_cf = calibration.content_free_probs(cf)
    assert p_cf.tolist() == pytest.approx([0.7, 0.3])
    # an input at [0.6, 0.4]: divided by p_cf -> [0.857, 1.333] -> normalised [0.391, 0.609]: the label flips
    q = calibration.calibrate(torch.tensor([[0.6, 0.4]]).log(), p_cf)
    assert q[0].tolist() == pytest.approx([0.6 / 0.7 / (0.6 / 0.7 + 0.4 / 0.3), 0.4 / 0.3 / (0.6 / 0.7 + 0.4 / 0.3)])
    assert int(q.argmax()) == 1
    # a uniform content-free prediction changes nothing
    same = calibration.calibrate(torch.tensor([[0.6, 0.4]]).log(), torch.tensor([0.5, 0.5]))
    assert same[0].tolist() == pytest.approx([0.6, 0.4])
