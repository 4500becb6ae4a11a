"""A sampler for several datasets in one run (multi-task learning, mixed-data SFT): through the sampler door.

The training features of every source are concatenated (source i owns a contiguous index range); each optimizer
batch is drawn from one source, so a batch never mixes tasks (each task's head and loss see whole batches). Which
source comes next:
  * ``proportional``: source i with probability n_i / sum(n) (every example seen about once per epoch);
  * ``temperature``: probability proportional to n_i ** (1 / tau) (tau = 1 is proportional; larger tau flattens
    towards uniform, so small tasks are seen more often; T5 and mT5 mix languages and tasks this way);
  * ``round_robin``: sources in turn, one batch each.
An epoch has as many batches as the sources' batches together (sum of ceil(n_i / batch_size)); a source that runs
out of batches before the epoch ends starts another shuffled pass over its examples. The plan of an epoch depends
only on the arguments and the epoch number, so resume continues with exactly the same batches.
"""

from __future__ import annotations

import math
import random

from tunelab.training.sampler import Sampler

STRATEGIES = ("proportional", "temperature", "round_robin")


def mixing_weights(sizes: list[int], strategy: str, tau: float = 1.0) -> list[float]:
    """Probability of drawing each source's next batch (sums to 1)."""
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"every source needs at least one example, got sizes {sizes}")
    if strategy == "round_robin":
        return [1.0 / len(sizes)] * len(sizes)
    if strategy == "proportional":
        tau = 1.0
    elif strategy != "temperature":
        raise ValueError(f"unknown mixing strategy '{strategy}'; choose one of: {', '.join(STRATEGIES)}")
    if tau <= 0:
        raise ValueError(f"temperature mixing needs tau > 0, got {tau}")
    raw = [n ** (1.0 / tau) for n in sizes]
    return [r / sum(raw) for r in raw]


class TaskMixture(Sampler):
    """Batches of one source at a time from the concatenated features of several sources (see the module docstring)."""

    def __init__(self, sizes: list[int], batch_size: int, seed: int, strategy: str = "proportional", tau: float = 1.0):
        self.sizes, self.batch_size, self.seed = list(sizes), batch_size, seed
        self.strategy, self.weights = strategy, mixing_weights(self.sizes, strategy, tau)
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    @classmethod
    def weighted(cls, sizes: list[int], batch_size: int, seed: int, weights: list[float]) -> "TaskMixture":
        """Sources drawn with probability weight / sum(weights) (mixed-data SFT's file weights, any positive scale)."""
        if len(weights) != len(sizes) or min(weights) <= 0:
            raise ValueError(f"weights: one positive weight per source ({len(sizes)}), got {weights}")
        mix = cls(sizes, batch_size, seed)
        mix.strategy, mix.weights = "weighted", [w / sum(weights) for w in weights]
        return mix

    def steps_per_epoch(self) -> int:
        return sum(math.ceil(n / self.batch_size) for n in self.sizes)

    def batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}:{epoch}")
        streams = [self._stream(i, epoch) for i in range(len(self.sizes))]
        out = []
        for step in range(self.steps_per_epoch()):
            if self.strategy == "round_robin":
                source = step % len(self.sizes)
            else:
                source = rng.choices(range(len(self.sizes)), weights=self.weights)[0]
            out.append(next(streams[source]))
        return out

    def _stream(self, source: int, epoch: int):
        """Endless batches of one source: shuffled passes over its examples, each pass seeded by (seed, epoch, pass)."""
        n, start = self.sizes[source], self.starts[source]
        rounds = 0
        while True:
            order = list(range(n))
            random.Random(f"{self.seed}:{epoch}:{source}:{rounds}").shuffle(order)
            for s in range(0, n, self.batch_size):
                yield [start + i for i in order[s : s + self.batch_size]]
            rounds += 1
