"""Stratified and grouped assignment to train/dev/test, by hand."""

from collections import Counter

import pytest

from tunelab.data import partition
from tunelab.errors import TunelabError


def test_ungrouped_split_is_exact_per_label():
    labels = ["a"] * 10 + ["b"] * 20
    where = partition.assign(list(range(30)), labels, (0.8, 0.1, 0.1), seed=3)
    counts = Counter((lab, w) for lab, w in zip(labels, where))
    assert counts == {("a", 0): 8, ("a", 1): 1, ("a", 2): 1, ("b", 0): 16, ("b", 1): 2, ("b", 2): 2}
    assert partition.assign(list(range(30)), labels, (0.8, 0.1, 0.1), seed=3) == where  # seeded


def test_groups_stay_together_and_fractions_are_close():
    groups = [i // 3 for i in range(90)]  # 30 groups of 3
    labels = ["a" if g % 2 else "b" for g in groups]
    where = partition.assign(groups, labels, (0.6, 0.2, 0.2), seed=0)
    assert all(len({where[i] for i in range(90) if groups[i] == g}) == 1 for g in range(30))
    sizes = Counter(where)
    assert sizes == {0: 54, 1: 18, 2: 18}
    assert partition.assign(groups, labels, (0.7, 0.3, 0.0), seed=0).count(2) == 0  # a zero fraction gets nothing


def test_merge_groups_and_ids():
    assert partition.group_ids(["x", "y", "x"]) == [0, 1, 0]
    assert partition.merge_groups([0, 0, 1, 2], [(2, 3)]) == [0, 0, 1, 1]
    assert partition.merge_groups([0, 1, 0, 2], [(1, 3)]) == [0, 1, 0, 1]


def test_parse_fractions():
    assert partition.parse_fractions("0.8,0.2") == (0.8, 0.2, 0.0)
    for bad in ("0.5,0.2,0.2", "x", "0,0.5,0.5", "1.2,-0.1,-0.1"):
        with pytest.raises(TunelabError, match="--fractions"):
            partition.parse_fractions(bad)
