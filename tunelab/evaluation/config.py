"""The ``analysis:`` config section: calibration and error analysis at the end of training."""

from __future__ import annotations

from pydantic import Field, field_validator

from tunelab.schema import Strict


class EvalConfig(Strict):
    metrics: list[str] = Field(
        [],
        description="Your own metrics, each `path/to/file.py:function` (add `:min` when lower is better): "
        "function(gold, predicted) -> number, computed on dev and test next to the task's metrics and usable as "
        "train.metric (by function name). Classification, multi_label and regression.",
    )

    @field_validator("metrics")
    @classmethod
    def _entries(cls, v: list[str]) -> list[str]:
        for entry in v:
            file, fn, _ = split_entry(entry)
            if not file.endswith(".py") or not fn.isidentifier():
                raise ValueError(f"'{entry}': expected path/to/file.py:function (optionally :min)")
        names = [split_entry(e)[1] for e in v]
        if len(set(names)) != len(names):
            raise ValueError("two custom metrics share a function name; names must be distinct")
        return v


def split_entry(entry: str) -> tuple[str, str, bool]:
    """(file, function, higher_is_better) of an eval.metrics entry ``file.py:function[:min]``."""
    head, _, last = entry.rpartition(":")
    if last in ("min", "max") and ":" in head:
        file, _, fn = head.rpartition(":")
        return file, fn, last == "max"
    return head, last, True


class AnalysisConfig(Strict):
    fit_temperature: bool = Field(
        True,
        description="Classification: fit temperature scaling on the dev split after training; predict and serve then use it.",
    )
    calibration_bins: int = Field(
        15,
        ge=2,
        le=100,
        description="Equal-width confidence bins for the expected calibration error and the reliability diagram.",
    )
    top_mistakes: int = Field(
        10, ge=0, description="Most confident mistakes shown in the report (errors.jsonl has all of them)."
    )
    examples_per_confusion: int = Field(3, ge=0, description="Example texts kept per confused (true, predicted) pair.")
    length_edges: list[int] = Field(
        [8, 16, 32, 64, 128],
        description="Upper edges of the length buckets (tokens; words for NER) for per-bucket accuracy.",
    )

    @field_validator("length_edges")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if not v or any(a >= b for a, b in zip(v, v[1:])) or v[0] < 1:
            raise ValueError("must be a non-empty list of increasing positive integers, e.g. [8, 16, 32]")
        return v
