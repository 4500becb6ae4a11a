"""Seeded, stratified train/dev split for when the user gives no dev file."""

from __future__ import annotations

import random
from collections import defaultdict


def stratified_split(labels: list[str | None], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, dev): each class contributes ``fraction`` of its rows (at least one if it has two or more)."""
    by_class: dict = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    rng = random.Random(seed)
    train, dev = [], []
    for label in sorted(by_class, key=str):
        idx = by_class[label][:]
        rng.shuffle(idx)
        n_dev = round(len(idx) * fraction)
        if len(idx) >= 2:
            n_dev = min(max(n_dev, 1), len(idx) - 1)
        else:
            n_dev = 0
        dev.extend(idx[:n_dev])
        train.extend(idx[n_dev:])
    return sorted(train), sorted(dev)
