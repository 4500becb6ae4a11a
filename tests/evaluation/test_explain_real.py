"""Integrated gradients on a real SST-2 minilm-l6 run: completeness within 5% on 20 dev sentences."""

from __future__ import annotations

import pytest

from tunelab import cli, runs
from tunelab.evaluation.explain import targets


@pytest.mark.real
def test_ig_completeness_on_20_sst2_sentences(tmp_path, shared_data):
    sst2 = shared_data / "sst2"
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--quiet",
                "model.name=minilm-l6",
                f"data.train={sst2 / 'train.tsv'}",
                f"data.dev={sst2 / 'dev.tsv'}",
                "data.text_column=sentence",
                "data.max_train_rows=400",
                "data.max_dev_rows=100",
                "model.max_length=64",
                "train.epochs=1",
                "train.batch_size=16",
                "train.lr=1e-4",
                f"output_dir={out}",
            ]
        )
        == 0
    )
    loaded = runs.load_run(out)
    lines = (sst2 / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    sentences = [ln.split("\t")[0].strip() for ln in lines if len(ln.split("\t")[0].split()) >= 5][:20]
    assert len(sentences) == 20
    opts = targets.Options(temperature=loaded.temperature)
    for s in sentences:
        e = targets.classification(loaded, {"text": s}, opts)
        c = e["completeness"]
        gap = c["f_input"] - c["f_baseline"]
        assert abs(c["sum"] - gap) <= 0.05 * max(abs(gap), 1e-3), (s, c)  # 5% of the gap (absolute below a gap of 1e-3)
        assert c["ok"]
        assert c["f_input"] == pytest.approx(e["prob"], abs=1e-5)  # f is the probability predict reports
