"""`tunelab icl` end to end on a tiny random Llama and a tiny masked LM (mechanics; quality is measured in bench/)."""

from __future__ import annotations

import json
import random

import pytest

from tunelab import cli
from tunelab.data.sources import Row
from tunelab.recipes import icl


def _args(model, data, out, *more):
    return [
        "icl",
        f"model.name={model}",
        f"data.train={data}",
        "data.text_column=sentence",
        "data.max_dev_rows=10",
        "prompt.verbalizer={0: [bad], 1: [good, great]}",
        f"output_dir={out}",
        *more,
    ]


def test_icl_runs_every_strategy_and_calibration_with_mean_and_std(tiny_llama_dir, sentiment_tsv, tmp_path):
    out = tmp_path / "icl"
    args = _args(tiny_llama_dir, sentiment_tsv, out, "icl.shots=2", "icl.seeds=[0,1]", "icl.pool_per_class=4")
    assert cli.main(args) == 0
    summary = json.loads((out / "icl.json").read_text())
    rows = {(r["strategy"], r["calibrated"]): r for r in summary["results"]}
    assert set(rows) == {(s, c) for s in ("random", "balanced", "nearest") for c in (False, True)}
    for r in rows.values():
        accs = [s["accuracy"] for s in r["seeds"]]
        assert [s["seed"] for s in r["seeds"]] == [0, 1]
        assert r["accuracy"] == pytest.approx(sum(accs) / 2)
        assert r["accuracy_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2**0.5)
    assert "| nearest | yes | 2 |" in (out / "icl.md").read_text()


def test_zero_shot_with_a_masked_lm_runs_once(tiny_mlm_dir, sentiment_tsv, tmp_path):
    out = tmp_path / "zero"
    assert cli.main(_args(tiny_mlm_dir, sentiment_tsv, out, "icl.shots=0", "icl.calibrate=[false]")) == 0
    (row,) = json.loads((out / "icl.json").read_text())["results"]
    assert row["strategy"] == "zero-shot" and len(row["seeds"]) == 1 and 0 <= row["accuracy"] <= 1


def test_icl_errors_name_what_is_missing(tiny_llama_dir, sentiment_tsv, tmp_path, capsys):
    bad = [a for a in _args(tiny_llama_dir, sentiment_tsv, tmp_path / "x") if not a.startswith("prompt.")]
    assert cli.main(bad) != 0
    assert "prompt.verbalizer" in capsys.readouterr().err
    words = _args(tiny_llama_dir, sentiment_tsv, tmp_path / "y")
    words[words.index("prompt.verbalizer={0: [bad], 1: [good, great]}")] = "prompt.verbalizer={0: [bad]}"
    assert cli.main(words) != 0
    assert "no words for label(s) '1'" in capsys.readouterr().err


class _Sims:
    def similarity(self, queries, pool):  # pool text i is most similar to query text i
        return [[1.0 if q == p else 0.0 for p in pool] for q in queries]


def test_nearest_selection_is_per_input_and_similarity_order_puts_the_nearest_last():
    pool = [Row(t, None, lab, i) for i, (t, lab) in enumerate([("a", "0"), ("b", "1"), ("c", "0"), ("d", "1")])]
    dev = [Row("b", None, "1", 1), Row("c", None, "0", 2)]
    cfg = icl.config_mod.load(None, ["icl.shots=2", "icl.order=similarity"]).icl
    chosen = icl.choose(cfg, "nearest", pool, dev, (random.Random(0), _Sims()))
    assert chosen[0][-1] == 1 and chosen[1][-1] == 2
    shared = icl.choose(cfg.model_copy(update={"order": "random"}), "balanced", pool, dev, (random.Random(0), None))
    assert shared[0] == shared[1] and sorted(pool[i].label for i in shared[0]) == ["0", "1"]


def test_fine_tuning_rows_train_on_the_same_pool(tiny_llama_dir, sentiment_tsv, tmp_path):
    out = tmp_path / "table"
    more = ["icl.shots=2", "icl.selection=[balanced]", "icl.calibrate=[true]", "icl.seeds=[3]", "icl.pool_per_class=4"]
    more += [
        "icl.finetune=[head, prompt]",
        "method=lora",
        "train.max_steps=2",
        "train.batch_size=4",
        "model.max_length=32",
    ]
    assert cli.main(_args(tiny_llama_dir, sentiment_tsv, out, *more)) == 0
    rows = {r["strategy"]: r for r in json.loads((out / "icl.json").read_text())["results"]}
    assert set(rows) == {"balanced", "fine-tuning, new head", "fine-tuning, prompt head"}
    pool = (out / "finetune-seed3" / "train.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["label"] for x in pool) == ["0"] * 4 + ["1"] * 4
    assert (out / "finetune-seed3" / "prompt" / "config.yaml").is_file()
    assert "prompt_classification" in (out / "finetune-seed3" / "prompt" / "config.yaml").read_text()
    assert "| fine-tuning, prompt head | - | 1 |" in (out / "icl.md").read_text()
    with pytest.raises(Exception, match="icl.finetune: needs icl.pool_per_class"):
        icl.fewshot.rows(icl.config_mod.load(None, ["icl.finetune=[head]"]), {}, print, icl.summarize)
