"""Demonstrations for in-context learning: the labelled pool, which k examples each input sees, and their order.

Pure functions of labels, seeds and (for ``nearest`` and ``similarity``) a similarity matrix; the embeddings are
computed by the recipe. Every function returns pool indices.
"""

from __future__ import annotations

import random
from collections import defaultdict


def sample_per_class(labels: list[str], per_class: int, seed: int) -> list[int]:
    """``per_class`` indices of each label, drawn with ``seed`` (the few-shot training set); sorted. A class with
    fewer rows gives all it has."""
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    chosen = []
    for label in sorted(by_class):
        rows = by_class[label]
        chosen.extend(rng.sample(rows, min(per_class, len(rows))))
    return sorted(chosen)


def random_choice(n_pool: int, k: int, rng: random.Random) -> list[int]:
    """k pool indices uniformly without replacement."""
    return rng.sample(range(n_pool), min(k, n_pool))


def balanced_choice(labels: list[str], k: int, rng: random.Random) -> list[int]:
    """k pool indices with as equal a count per class as k allows (the remainder goes to randomly chosen classes)."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    classes = sorted(by_class)
    extra = set(rng.sample(classes, k % len(classes))) if k % len(classes) else set()
    chosen = []
    for label in classes:
        want = k // len(classes) + (label in extra)
        chosen.extend(rng.sample(by_class[label], min(want, len(by_class[label]))))
    return chosen


def nearest_choice(similarity: list[float], k: int) -> list[int]:
    """The k pool indices most similar to one input (``similarity``: one value per pool row), most similar first."""
    return sorted(range(len(similarity)), key=lambda i: -similarity[i])[:k]


def order(chosen: list[int], how: str, similarity: list[float] | None, rng: random.Random) -> list[int]:
    """``chosen`` in prompt order: shuffled (random), or by increasing similarity so the most similar demonstration
    sits next to the input (similarity)."""
    if how == "similarity":
        if similarity is None:
            raise ValueError("ordering by similarity needs the similarities")
        return sorted(chosen, key=lambda i: similarity[i])
    out = list(chosen)
    rng.shuffle(out)
    return out


def select(strategy: str, labels: list[str], k: int, rng: random.Random, similarity: list[float] | None = None):
    """k pool indices for one input by ``strategy`` (random, balanced, nearest)."""
    if strategy == "random":
        return random_choice(len(labels), k, rng)
    if strategy == "balanced":
        return balanced_choice(labels, k, rng)
    if similarity is None:
        raise ValueError("nearest selection needs the similarities")
    return nearest_choice(similarity, k)
