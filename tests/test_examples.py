"""Every example config under examples/ loads and validates."""

from pathlib import Path

import pytest

from tunelab import config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_example_validates(path):
    cfg = config.load(path)
    assert cfg.output_dir


def test_there_are_examples():
    assert EXAMPLES
