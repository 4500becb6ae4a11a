"""Every example config under examples/ loads and validates."""

from pathlib import Path

import pytest

from tunelab import config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_config_loads(path):
    cfg = config.load(path)
    assert cfg.output_dir.startswith("runs/")
