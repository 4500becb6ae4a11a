"""Continual-learning parts (building blocks for a `tunelab continual` recipe; no command uses them yet).

* ``forgetting`` and ``backward_transfer`` read an accuracy matrix ``R`` where ``R[i][j]`` is the score on task j
  after training stage i (tasks in stage order; entries for j > i are not needed). Definitions as in Chaudhry et
  al. 2018 (forgetting) and Lopez-Paz & Ranzato 2017 (backward transfer, GEM):
  forgetting_j = max_{i < T-1} R[i][j] - R[T-1][j], averaged over the tasks j < T-1;
  BWT = mean over j < T-1 of R[T-1][j] - R[j][j].
* ``Reservoir``: a reservoir sample of at most k items of a stream (Vitter's algorithm R), seeded, with its state
  for checkpoints: the replay memory of one earlier task.
* ``ewc_penalty``: Elastic Weight Consolidation's (lambda / 2) * sum_i F_i (theta_i - theta*_i)^2 over the
  parameters that have a Fisher estimate; ``diagonal_fisher`` estimates F as the mean over batches of the squared
  gradient of their loss: given one example per batch, the empirical Fisher of Kirkpatrick et al. (the squared
  gradient of a whole batch's mean loss is up to batch-size times smaller, mostly the noise averaged away).
"""

from __future__ import annotations

import random


def forgetting(matrix: list[list[float]]) -> float:
    """Average forgetting of the tasks before the last after the last stage (0.0 with a single stage)."""
    last = len(matrix) - 1
    if last < 1:
        return 0.0
    drops = [max(matrix[i][j] for i in range(j, last)) - matrix[last][j] for j in range(last)]
    return sum(drops) / len(drops)


def backward_transfer(matrix: list[list[float]]) -> float:
    """Mean change of each earlier task's score from right after its stage to after the last stage (negative =
    forgetting)."""
    last = len(matrix) - 1
    if last < 1:
        return 0.0
    return sum(matrix[last][j] - matrix[j][j] for j in range(last)) / last


class Reservoir:
    """At most ``k`` items of a stream, each kept with equal probability (algorithm R), reproducible from the seed."""

    def __init__(self, k: int, seed: int):
        if k < 1:
            raise ValueError(f"a replay memory needs k >= 1, got {k}")
        self.k, self.seed = k, seed
        self.items: list = []
        self.seen = 0
        self._rng = random.Random(seed)

    def add(self, item) -> None:
        self.seen += 1
        if len(self.items) < self.k:
            self.items.append(item)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.k:
            self.items[slot] = item

    def state_dict(self) -> dict:
        return {"items": list(self.items), "seen": self.seen, "rng": self._rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.items, self.seen = list(state["items"]), state["seen"]
        self._rng.setstate(state["rng"])


def ewc_penalty(named_params, anchors: dict, fisher: dict, lam: float):
    """(lam / 2) * sum F (theta - theta*)^2 over the parameters named in ``fisher`` (a 0-dim tensor)."""
    total = None
    for name, p in named_params:
        if name not in fisher:
            continue
        term = (fisher[name] * (p - anchors[name]) ** 2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("ewc_penalty: no parameter of the model has a Fisher estimate (names differ?)")
    return 0.5 * lam * total


def diagonal_fisher(model, batches, loss_of) -> dict:
    """Mean over ``batches`` of the squared gradient of ``loss_of(model, batch)`` per trainable parameter."""
    import torch

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss_of(model, batch).backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach() ** 2
        count += 1
    model.zero_grad(set_to_none=True)
    return {n: f / max(count, 1) for n, f in fisher.items()}
