"""A runs folder made by real (tiny) training runs, shared by the dashboard tests of a module."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import browser_context, page  # noqa: F401  (browser fixtures for this folder's tests)
from tests.conftest import write_sentiment


def tiny_overrides(model_dir: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"model.name={model_dir}",
        f"data.train={data}",
        "data.text_column=sentence",
        f"output_dir={out}",
        "train.batch_size=8",
        "train.lr=1e-2",
        "train.log_every=1",
        "train.eval_every=4",
        "train.max_steps=12",
        "train.precision=fp32",
        "train.threads=1",
        "speed.cache=false",
        *extra,
    ]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory, tiny_bert_dir) -> Path:
    """runs/full and runs/lora: two finished tiny classification runs (12 steps, evaluated every 4)."""
    from tunelab import config
    from tunelab.recipes import finetune

    root = tmp_path_factory.mktemp("runs")
    data = write_sentiment(root.parent / f"{root.name}-train.tsv", n=96)
    for method in ("full", "lora"):
        cfg = config.load(None, tiny_overrides(tiny_bert_dir, data, root / method, f"method={method}"))
        finetune.run(cfg, quiet=True, log=lambda m: None)
    return root
