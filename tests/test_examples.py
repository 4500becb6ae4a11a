"""Every example config under examples/ loads and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab import config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("**/*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_example_config_loads(path):
    cfg = config.load(path)
    assert cfg.output_dir
