"""Training-label checks: a stray label of another kind, or one too rare to learn, is reported with its lines."""

from __future__ import annotations

import pytest

from tunelab.data import labels
from tunelab.data.sources import Row
from tunelab.errors import DataError


def _rows(spec: list[tuple[str, int]]) -> list[Row]:
    out, line = [], 2
    for label, n in spec:
        for _ in range(n):
            out.append(Row("some text", None, label, line))
            line += 1
    return out


def test_a_number_among_words_is_reported_with_its_line():
    rows = _rows([("positive", 40), ("negative", 40)]) + [Row("odd", None, "1", 200)]
    assert labels.problems(rows, 2) == ["label '1' is a number while 80 of 81 rows have word labels (line 200)"]


def test_rare_labels_are_reported_and_common_ones_are_not():
    rows = _rows([("0", 30), ("1", 30), ("2", 1)])
    assert labels.problems(rows, 2) == ["label '2' occurs in only 1 row (line 62)"]
    assert labels.problems(rows, 1) == []
    assert labels.problems(_rows([("a", 12), ("b", 12)]), 2) == []
    many = labels.problems(_rows([("a", 50), ("b", 12)]), 20)
    assert many == ["label 'b' occurs in only 12 rows (lines 52, 53, 54, 55, 56, 57, 58, 59, 60, 61 and 2 more)"]


def test_check_errors_warns_or_is_off():
    rows = _rows([("pos", 10), ("neg", 10), ("7", 1)])
    with pytest.raises(
        DataError, match=r"^train.tsv: suspicious training labels: label '7' is a number .* data.label_check=warn"
    ):
        labels.check(rows, "train.tsv", 2, "error", print)
    logged = []
    labels.check(rows, "train.tsv", 2, "warn", logged.append)
    assert logged == ["warning: train.tsv: label '7' is a number while 20 of 21 rows have word labels (line 22)"]
    labels.check(rows, "train.tsv", 2, "off", logged.append)
    labels.check([], "train.tsv", 2, "error", logged.append)
    assert len(logged) == 1
