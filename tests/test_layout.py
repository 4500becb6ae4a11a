"""The test tree's own rules: tests/ folders are not packages, so two test files with the same name would make
pytest refuse to collect the second one (an import-file mismatch that stops the whole run)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_file_names_are_unique_across_folders():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, k in names.items() if k > 1] == []
