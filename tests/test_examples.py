"""Every example config under examples/ loads and validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunelab import config
from tunelab.serve import config as serve_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_config_validates(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if set(raw) == {"serve"}:  # a `tunelab serve --config` file
        assert serve_config.load(path, {}).host == "127.0.0.1"
        return
    if "compute_environment" in raw:  # an accelerate config (examples/distributed/): tests/training/test_distributed.py
        from accelerate.commands.config.config_args import load_config_from_file

        assert load_config_from_file(str(path)).num_processes > 1
        return
    if "distill" in raw:  # a `tunelab distill` config: a run config plus the distill: section
        from tunelab.recipes import distill

        cfg, kd = distill.load(str(path), [])
        assert kd.teacher
    elif "federated" in raw:  # a `tunelab federated` config: a run config plus the federated: section
        from tunelab.federated.config import load

        cfg, fed = load(str(path), [])
        assert fed.rounds >= 1
    elif "continual" in raw:  # a `tunelab continual` config: shared run sections plus the continual: section
        from tunelab.recipes import continual

        cfg, cc = continual.load(str(path), [])
        assert len(cc.stages) >= 2 and cfg.task.name == "multitask"
    else:
        cfg = config.load(path)
    assert cfg.output_dir and cfg.model.name


def test_there_are_examples():
    assert EXAMPLES


def test_instruct_example_is_a_causal_lm_lora_run():
    cfg = config.load(Path(__file__).resolve().parents[1] / "examples" / "instruct" / "alpaca_lora.yaml")
    assert (cfg.task.name, cfg.method.name, cfg.task.train_on, cfg.data.max_train_rows) == (
        "causal_lm",
        "lora",
        "assistant",
        1000,
    )
