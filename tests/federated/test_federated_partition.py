"""Partitions of one training file over clients: IID sizes, Dirichlet label proportions, held-out rows, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.errors import TunelabError
from tunelab.federated import partition


def test_iid_parts_are_disjoint_near_equal_and_seeded():
    parts = partition.iid(103, 4, seed=1)
    assert sorted(i for p in parts for i in p) == list(range(103))
    assert sorted(len(p) for p in parts) == [25, 26, 26, 26]
    assert partition.iid(103, 4, seed=1) == parts and partition.iid(103, 4, seed=2) != parts
    with pytest.raises(TunelabError, match="more clients than training rows"):
        partition.iid(3, 4, seed=0)


def test_dirichlet_proportions_follow_alpha():
    rng = np.random.default_rng(0)
    labels = list(rng.integers(0, 2, size=4000))
    # alpha 1000: every client's label mix is close to the whole file's (~50/50)
    near_iid = partition.dirichlet(labels, 4, alpha=1000.0, seed=0)
    assert sorted(i for p in near_iid for i in p) == list(range(4000))
    for part in near_iid:
        share = np.mean([labels[i] for i in part])
        assert abs(share - np.mean(labels)) < 0.05
        assert abs(len(part) - 1000) < 100
    # alpha 0.1: most clients are dominated by one label
    skewed = partition.dirichlet(labels, 4, alpha=0.1, seed=0)
    assert sorted(i for p in skewed for i in p) == list(range(4000))
    dominant = [max(np.mean([labels[i] for i in p]), 1 - np.mean([labels[i] for i in p])) for p in skewed]
    assert np.mean(dominant) > 0.8
    counts = partition.label_counts(labels, skewed)
    assert [sum(c.values()) for c in counts] == [len(p) for p in skewed]
    assert partition.dirichlet(labels, 4, alpha=0.1, seed=0) == skewed


def test_dirichlet_guarantees_min_rows_or_says_why():
    labels = [0] * 10 + [1] * 10
    parts = partition.dirichlet(labels, 4, alpha=0.5, seed=3, min_rows=2)
    assert min(len(p) for p in parts) >= 2
    with pytest.raises(TunelabError, match="cannot give each client 2"):
        partition.dirichlet(labels, 11, alpha=0.5, seed=0)
    with pytest.raises(TunelabError, match="federated.alpha=1e-06.*raise federated.alpha"):
        partition.dirichlet(labels, 10, alpha=1e-6, seed=0, tries=3)


def test_holdout_keeps_a_seeded_fraction_apart():
    train, dev = partition.holdout(list(range(50)), 0.1, seed=0)
    assert len(dev) == 5 and not set(train) & set(dev) and sorted(train + dev) == list(range(50))
    assert partition.holdout([7], 0.1, seed=0) == ([7], [7])
