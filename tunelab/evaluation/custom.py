"""The user's own metrics (``eval.metrics``): functions loaded from Python files named explicitly in the config.

Each entry is ``path/to/file.py:function`` (``:min`` appended when lower is better). The file is executed as a
module of its own (never imported by a name taken from data); ``function(gold, predicted)`` gets one answer per
dev/test item in the task's answer form (classification: label names; multi_label: lists of label names;
regression: numbers, or lists with several targets) and returns a number. The values sit next to the task's own
metrics in metrics.jsonl and metrics.json, and ``train.metric`` may name one (by function name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from tunelab.errors import ConfigError, TunelabError
from tunelab.evaluation.config import split_entry
from tunelab.training.evaluation import Evaluator, Metric


@dataclass(frozen=True)
class UserMetric:
    """One loaded eval.metrics entry."""

    entry: str
    metric: Metric
    fn: Callable


def load(entries: list[str]) -> list[UserMetric]:
    """Load every entry's function; ConfigError naming the entry when the file or function is missing or broken."""
    import importlib.util

    out = []
    for entry in entries:
        file, name, higher = split_entry(entry)
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"eval.metrics: '{entry}': file {file} not found (paths are relative to {Path.cwd()})")
        spec = importlib.util.spec_from_file_location(f"tunelab_user_metric_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: any error is reported with its entry
            raise ConfigError(f"eval.metrics: '{entry}': running {file} failed: {type(exc).__name__}: {exc}") from None
        fn = vars(module).get(name)
        if not callable(fn):
            found = ", ".join(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise ConfigError(
                f"eval.metrics: '{entry}': {file} has no function {name!r} (functions: {found or 'none'})"
            )
        out.append(UserMetric(entry, Metric(name, higher, f"custom metric {entry}"), fn))
    return out


def chosen(task, name: str | None, user: list[UserMetric]) -> Metric:
    """The metric ``train.metric`` names: one of the user's, else the task's (its ValueError for unknown names)."""
    for u in user:
        if u.metric.name == name:
            return u.metric
    return task.metric(name)


def value(u: UserMetric, gold: list, predicted: list) -> float:
    """``u``'s value on the answers; TunelabError naming the entry when it raises or returns a non-number."""
    try:
        got = u.fn(gold, predicted)
    except Exception as exc:  # the user's code
        raise TunelabError(f"eval.metrics: '{u.entry}' raised {type(exc).__name__}: {exc}") from None
    number = isinstance(got, (int, float)) and not isinstance(got, bool)
    if not number:
        try:  # numpy and torch scalars
            got = float(got.item())
            number = True
        except (AttributeError, TypeError, ValueError):
            pass
    if not number or not math.isfinite(got):
        raise TunelabError(
            f"eval.metrics: '{u.entry}' returned {got!r} ({type(got).__name__}); expected a finite number"
        )
    return float(got)


def with_user_metrics(evaluator: Evaluator | None, user: list[UserMetric], task_name: str) -> Evaluator | None:
    """``evaluator`` whose summary also holds every user metric; TunelabError when the task gives no answers."""
    if evaluator is None or not user:
        return evaluator
    if evaluator.answers is None:
        raise TunelabError(f"eval.metrics: task {task_name} gives no answers to compute custom metrics on")

    def summarize(results: list) -> dict:
        out = evaluator.summarize(results)  # first: it may fit what answers use (multi-label thresholds)
        gold, predicted = evaluator.answers(results)
        return {**out, **{u.metric.name: value(u, gold, predicted) for u in user}}

    return replace(evaluator, summarize=summarize)
