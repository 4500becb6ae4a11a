"""How one training file is split over simulated clients: pure functions, row indices in, index lists out.

``iid``: a seeded shuffle dealt into ``k`` near-equal parts. ``dirichlet``: for every label, the share of each
client is drawn from Dirichlet(alpha) (the usual non-IID benchmark of Hsu et al. 2019): small alpha gives each
client a few dominant labels, large alpha approaches IID. Every client is guaranteed ``min_rows`` rows by
redrawing (seeded), as Flower Datasets' DirichletPartitioner does; an impossible request is an error.
"""

from __future__ import annotations

import random
from collections import defaultdict

from tunelab.errors import TunelabError


def iid(n: int, k: int, seed: int) -> list[list[int]]:
    """``k`` parts of ``range(n)``, shuffled with ``seed``, sizes differing by at most one."""
    if k > n:
        raise TunelabError(f"federated.clients={k}: more clients than training rows ({n})")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def dirichlet(labels: list, k: int, alpha: float, seed: int, min_rows: int = 2, tries: int = 100) -> list[list[int]]:
    """``k`` parts of the rows whose label shares per client follow Dirichlet(``alpha``), seeded.

    Args:
        labels: the label of each row (any hashable).
        k: clients.
        alpha: concentration (> 0); 0.1-0.5 is strongly non-IID, 100 is close to IID.
        seed: draws are reproducible from it.
        min_rows: every client gets at least this many rows (the draw is repeated, up to ``tries`` times).
    """
    import numpy as np

    if k * min_rows > len(labels):
        raise TunelabError(f"federated.clients={k}: {len(labels)} training rows cannot give each client {min_rows}")
    by_label: dict = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        parts: list[list[int]] = [[] for _ in range(k)]
        for label in sorted(by_label, key=str):
            rows = list(by_label[label])
            rng.shuffle(rows)
            shares = rng.dirichlet([alpha] * k)
            cuts = (np.cumsum(shares)[:-1] * len(rows)).round().astype(int)
            for client, chunk in enumerate(np.split(np.array(rows, dtype=np.int64), cuts)):
                parts[client].extend(int(i) for i in chunk)
        if min(len(p) for p in parts) >= min_rows:
            return [sorted(p) for p in parts]
    raise TunelabError(
        f"federated.alpha={alpha}: {tries} Dirichlet draws all left a client with fewer than {min_rows} rows; "
        "raise federated.alpha, use fewer clients or more rows"
    )


def label_counts(labels: list, parts: list[list[int]]) -> list[dict[str, int]]:
    """Rows of each label in each part (for the report)."""
    out = []
    for part in parts:
        counts: dict[str, int] = defaultdict(int)
        for i in part:
            counts[str(labels[i])] += 1
        out.append(dict(sorted(counts.items())))
    return out


def holdout(part: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A client's own (train, dev) rows: a seeded ``fraction`` of its part (at least one row) is held out for the
    client's local metrics; with a single row, it is both."""
    if len(part) < 2:
        return list(part), list(part)
    order = list(part)
    random.Random(seed).shuffle(order)
    n_dev = min(len(order) - 1, max(1, round(fraction * len(order))))
    return sorted(order[n_dev:]), sorted(order[:n_dev])
