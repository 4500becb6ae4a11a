"""Check one cell of a data row: a text, a class label, a set of labels, or a numeric target.

Each reader returns the cell as the string the tasks expect, or raises ``RowProblem`` saying what was expected in
which column and what was found; sources.py adds the file and line (and skips the row under ``on_error: skip``).
"""

from __future__ import annotations

import json

_KINDS = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}


class RowProblem(Exception):
    """A problem confined to one row; skippable under ``on_error="skip"``."""


def kind(value) -> str:
    """A JSON value's kind as an error message names it: object, list, string, number, boolean or null."""
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


def text_cell(value, what: str, ref) -> str:
    if not isinstance(value, str):
        raise RowProblem(f"{what} in column {ref!r}: expected a string, found {kind(value)}")
    if not value.strip():
        raise RowProblem(f"{what} in column {ref!r}: expected non-empty text, found {value!r}")
    return value


def _label(value, ref) -> str:
    if isinstance(value, int):
        return json.dumps(value)  # as str(), but booleans get JSON's spelling: true, not True
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowProblem(f"label in column {ref!r}: expected a label, found {json.dumps(value)}")
    if not isinstance(value, str):
        found = f"{kind(value)} {json.dumps(value)[:60]}"
        raise RowProblem(f"label in column {ref!r}: expected a string or integer, found {found}")
    return value.strip()  # labels are compared as strings later: "1 " must be the class "1"


def _label_set(value, ref) -> str:
    """A multi-label cell: a delimited string (split later by the task), an integer, or a JSON list of them."""
    if not isinstance(value, list):
        return _label(value, ref)
    if any(isinstance(v, bool) or not isinstance(v, (str, int)) for v in value):
        bad = next(v for v in value if isinstance(v, bool) or not isinstance(v, (str, int)))
        raise RowProblem(
            f"label list in column {ref!r}: expected strings or integers, found {kind(bad)} {json.dumps(bad)}"
        )
    return json.dumps([v if isinstance(v, str) else json.dumps(v) for v in value])


def _number(value, ref) -> str:
    """A regression target: a number, a numeric string, or a JSON list of numbers (several targets)."""
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        raise RowProblem(f"target in column {ref!r}: expected a number or a list of numbers, found []")
    out = []
    for v in items:
        if isinstance(v, str):
            try:
                v = float(v.strip())
            except ValueError:
                raise RowProblem(f"target in column {ref!r}: expected a number, found {json.dumps(v)[:60]}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
            raise RowProblem(
                f"target in column {ref!r}: expected a finite number, found {kind(v)} {json.dumps(v)[:60]}"
            )
        out.append(float(v))
    return json.dumps(out) if isinstance(value, list) else repr(out[0])


LABEL_READERS = {"class": _label, "set": _label_set, "number": _number}
LABEL_KINDS = tuple(LABEL_READERS)
