"""Checks on classification training labels that catch silent data pitfalls before a run starts.

A stray ``1`` among ``positive``/``negative`` becomes a third class that the dev split may not even
contain (macro-F1 then averages over a class with no rows); a label seen in one row cannot be learned
or evaluated. Both are almost always a data error, so they are reported with their lines.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Callable

from tunelab.data.sources import Row
from tunelab.errors import DataError

SHOWN_LINES = 10


def problems(rows: list[Row], min_rows: int) -> list[str]:
    """One sentence per suspicious label: too rare, or of another kind (number vs word) than most labels."""
    lines: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        if r.label is not None:
            lines[r.label].append(r.line)
    if len(lines) < 2:
        return []
    kinds = Counter(_kind(label) for label, ls in lines.items() for _ in ls)  # rows per kind
    majority, n_majority = kinds.most_common(1)[0]
    odd = sorted(label for label in lines if _kind(label) != majority)
    out = [
        f"label {label!r} is a {_kind(label)} while {n_majority} of {sum(kinds.values())} rows have {majority} labels "
        f"({_where(lines[label])})"
        for label in odd
    ]
    for label, ls in sorted(lines.items(), key=lambda kv: (len(kv[1]), kv[0])):
        if len(ls) < min_rows and label not in odd:
            out.append(f"label {label!r} occurs in only {len(ls)} row{'s' if len(ls) > 1 else ''} ({_where(ls)})")
    return out


def check(rows: list[Row], source: str, min_rows: int, action: str, log: Callable[[str], None]) -> None:
    """Raise (action "error") or log (action "warn") the label problems of the training rows; "off" skips."""
    if action == "off" or not rows or not isinstance(rows[0], Row):
        return
    found = problems(rows, min_rows)
    if not found:
        return
    fix = (
        "fix or remove those rows; set data.min_label_rows (now "
        f"{min_rows}) or data.label_check=warn to train with them anyway"
    )
    if action == "error":
        raise DataError(f"{source}: suspicious training labels: " + "; ".join(found) + f". {fix}")
    for p in found:
        log(f"warning: {source}: {p}")


def _kind(label: str) -> str:
    return "number" if label.lstrip("-").isdigit() else "word"


def _where(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:SHOWN_LINES])
    more = f" and {len(lines) - SHOWN_LINES} more" if len(lines) > SHOWN_LINES else ""
    return f"line{'s' if len(lines) > 1 else ''} {shown}{more}"
