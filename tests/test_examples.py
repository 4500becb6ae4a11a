"""Every example config under examples/ loads and validates (run configs, and `serve:` files for tunelab serve)."""

from pathlib import Path

import pytest
import yaml

from tunelab import config
from tunelab.serve import config as serve_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_example_validates(path):
    if set(yaml.safe_load(path.read_text(encoding="utf-8")) or {}) == {"serve"}:
        assert serve_config.load(path, {}).host == "127.0.0.1"
        return
    cfg = config.load(path)
    assert cfg.output_dir


def test_there_are_examples():
    assert EXAMPLES
