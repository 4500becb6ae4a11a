"""Evaluation as data: which metric is which way, and evaluators that can be sharded over processes.

An ``Evaluator`` is split in two so that several processes can each score a share of the items and one
summary is computed from all of them: ``score`` runs the model on any subset of item indices and returns
one result per index; ``summarize`` is pure and turns the results (in index order) into metrics.
Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager


@dataclass(frozen=True)
class Metric:
    """A metric a task reports, and which way is better (declared, never guessed from the name)."""

    name: str
    higher_is_better: bool
    description: str = ""

    def better(self, value: float, best: float | None) -> bool:
        """True when ``value`` improves on ``best`` (None = nothing yet)."""
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best


@dataclass(frozen=True)
class Evaluator:
    """One dev or test evaluation.

    Attributes:
        size: number of items (examples, windows, ...); indices are ``range(size)``.
        score: ``score(model, indices) -> list`` with one picklable result per index, in the order given.
            Runs under ``torch.no_grad`` (and the run's autocast); moves its batches to the model's device.
        summarize: ``summarize(results) -> dict`` of metrics from all results in index order; pure.
        answers: ``answers(results) -> (gold, predicted)``, one per item in the task's answer form (class names,
            label sets, numbers), for the user's own metrics (eval.metrics); None when the task has no such form.
    """

    size: int
    score: Callable[[Any, list[int]], list]
    summarize: Callable[[list], dict]
    answers: Callable[[list], tuple[list, list]] | None = None


def evaluate(evaluator: Evaluator, model, autocast: ContextManager | None = None) -> dict:
    """Every item on this process (single-process use: eval, predict, compare, tests)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast or contextlib.nullcontext():
            results = evaluator.score(model, list(range(evaluator.size)))
    finally:
        model.train(was_training)
    return evaluator.summarize(results)
