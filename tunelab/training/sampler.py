"""The loop's second door: which examples form each optimizer batch.

A ``Sampler`` returns the batches of one epoch as lists of indices into the training features. The plan of
an epoch must depend only on the sampler's construction arguments, the epoch number and its own saved
state, so a resumed run (even on another number of processes) continues with exactly the batches it would
have seen. The loop splits each batch over processes and micro-batches itself.

Ideas that fit without touching the loop: a mixed-task sampler (features of several tasks concatenated;
each batch drawn from one task by a weighted, seeded choice; collate puts the task name in the batch for
the objective), a replay sampler for continual learning (each batch mixes new examples with a seeded
draw from a memory of old ones, the memory being part of ``state_dict``), curriculum or class-balanced
samplers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod


class Sampler(ABC):
    """Plans optimizer batches, epoch by epoch."""

    @abstractmethod
    def batches(self, epoch: int) -> list[list[int]]:
        """Indices of every optimizer batch of ``epoch`` (0-based); the same epoch always gives the same plan."""

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (default: the number of batches of epoch 0)."""
        return len(self.batches(0))

    def state_dict(self) -> dict:
        """State saved in checkpoints (default: none; the plan depends only on the arguments)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""


class LengthGrouped(Sampler):
    """The default: a seeded shuffle per epoch; with ``group``, examples of similar length share a batch."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group: bool = True):
        self.lengths, self.batch_size, self.seed, self.group = list(lengths), batch_size, seed, group

    def batches(self, epoch: int) -> list[list[int]]:
        from tunelab.data.collate import batch_plan

        return batch_plan(self.lengths, self.batch_size, self.seed, epoch, self.group)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


class Balanced(Sampler):
    """Every class equally likely: each of an epoch's ``ceil(n / batch_size)`` batches draws its rows by picking a
    class uniformly, then a row of it uniformly (with replacement), seeded by (seed, epoch). Minority rows repeat,
    majority rows are seen less often; the epoch keeps the length of one pass over the data."""

    def __init__(self, groups: list, batch_size: int, seed: int):
        by: dict = {}
        for i, g in enumerate(groups):
            by.setdefault(g, []).append(i)
        self.members = [by[g] for g in sorted(by, key=str)]
        self.n, self.batch_size, self.seed = len(groups), batch_size, seed

    def batches(self, epoch: int) -> list[list[int]]:
        import random

        rng = random.Random(self.seed * 1_000_003 + epoch)
        draws = [rng.choice(rng.choice(self.members)) for _ in range(self.n)]
        return [draws[s : s + self.batch_size] for s in range(0, self.n, self.batch_size)]

    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.batch_size)
