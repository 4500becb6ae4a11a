"""A sampler for several datasets in one run (multi-task learning, mixed-data SFT): through the sampler door.

The training features of every source are concatenated (source i owns a contiguous index range); each optimizer
batch is drawn from one source, so a batch never mixes tasks (each task's head and loss see whole batches). Which
source comes next:
  * ``proportional``: every source's batches exactly once per epoch, in a seeded random interleaving (source i
    then fills a share n_i / sum(n) of the steps, spread over the whole epoch, and every example is seen once);
  * ``temperature``: each batch's source drawn with probability proportional to n_i ** (1 / tau) (tau = 1 is
    proportional in expectation; larger tau flattens towards uniform, so small tasks are seen more often; T5 and
    mT5 mix languages and tasks this way);
  * ``round_robin``: sources in turn, one batch each;
  * ``weighted`` (``TaskMixture.weighted``): each batch's source drawn with probability weight_i / sum(weights).
An epoch has as many batches as the sources' batches together (sum of ceil(n_i / batch_size)); a source that runs
out of batches before the epoch ends starts another pass over its examples. Source i's batches in epoch e are
``data.collate.batch_plan`` over its own examples' ``lengths`` with the run's seed: exactly the batches a run on
source i alone would train on in epoch e (the loop's LengthGrouped sampler; without length grouping, the same
batches in another order); so with ``proportional`` a multi-task run sees each task's single-task batches, interleaved. A further
pass r in the same epoch uses seed + 7919 r. The plan of an epoch depends only on the arguments and the epoch
number, so resume continues with exactly the same batches.
"""

from __future__ import annotations

import math
import random

from tunelab.training.sampler import Sampler

STRATEGIES = ("proportional", "temperature", "round_robin")
PASS_SEED_STRIDE = 7919  # pass r > 0 of a source within one epoch is planned with seed + r * this


def mixing_weights(sizes: list[int], strategy: str, tau: float = 1.0) -> list[float]:
    """Share of the batches that comes from each source (sums to 1): a probability per batch, or (proportional) the
    exact share of an epoch."""
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


def source_lengths(sources: list[list[dict]], group: bool) -> list[list[int]]:
    """TaskMixture's ``lengths`` for sources of encoded features: their ``input_ids`` lengths, or (``group`` off) all
    equal, which gives plain shuffled batches (the same batches as the loop's LengthGrouped without grouping)."""
    return [[len(f["input_ids"]) if group else 1 for f in source] for source in sources]


class TaskMixture(Sampler):
    """Batches of one source at a time from the concatenated features of several sources (see the module docstring).

    Args:
        lengths: the token length of every example of each source, in the order of the concatenated features
            (source i has ``len(lengths[i])`` examples); batches within a source group similar lengths, as the
            loop's default sampler does (all lengths equal: plain shuffled batches; see ``source_lengths``).
    """

    def __init__(
        self, lengths: list[list[int]], batch_size: int, seed: int, strategy: str = "proportional", tau: float = 1.0
    ):
        self.lengths = [list(x) for x in lengths]
        self.sizes, self.batch_size, self.seed = [len(x) for x in self.lengths], batch_size, seed
        self.strategy, self.weights = strategy, mixing_weights(self.sizes, strategy, tau)
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    @classmethod
    def weighted(cls, lengths: list[list[int]], batch_size: int, seed: int, weights: list[float]) -> "TaskMixture":
        """Sources drawn with probability weight / sum(weights) (mixed-data SFT's file weights, any positive scale)."""
        if len(weights) != len(lengths) or min(weights) <= 0:
            raise ValueError(f"weights: one positive weight per source ({len(lengths)}), got {weights}")
        mix = cls(lengths, batch_size, seed)
        mix.strategy, mix.weights = "weighted", [w / sum(weights) for w in weights]
        return mix

    def steps_per_epoch(self) -> int:
        return sum(self._batches_of(n) for n in self.sizes)

    def _batches_of(self, n: int) -> int:
        return math.ceil(n / self.batch_size)

    def batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}:{epoch}")
        streams = [self._stream(i, epoch) for i in range(len(self.sizes))]
        return [next(streams[source]) for source in self._order(rng)]

    def _order(self, rng: random.Random) -> list[int]:
        """The source of each batch of the epoch."""
        steps, ids = self.steps_per_epoch(), range(len(self.sizes))
        if self.strategy == "round_robin":
            return [step % len(self.sizes) for step in range(steps)]
        if self.strategy == "proportional":  # each source's batches exactly once, interleaved at random
            order = [i for i in ids for _ in range(self._batches_of(self.sizes[i]))]
            rng.shuffle(order)
            return order
        return [rng.choices(ids, weights=self.weights)[0] for _ in range(steps)]

    def _stream(self, source: int, epoch: int):
        """Endless batches of one source: passes over its examples, pass r planned by batch_plan with the seed
        + r * PASS_SEED_STRIDE (pass 0: the batches a run on this source alone gets in this epoch)."""
        from tunelab.data.collate import batch_plan

        start, rounds = self.starts[source], 0
        while True:
            seed = self.seed + rounds * PASS_SEED_STRIDE
            for batch in batch_plan(self.lengths[source], self.batch_size, seed, epoch):
                yield [start + i for i in batch]
            rounds += 1
