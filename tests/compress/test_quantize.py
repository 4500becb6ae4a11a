"""tunelab quantize: each scheme writes a run folder that eval/predict load, with its measured cost."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch

from tunelab import cli, runs
from tunelab.compress import quantize


@pytest.mark.parametrize("scheme", list(quantize.SCHEMES))
def test_quantized_run_loads_predicts_and_records_its_cost(scheme, tiny_cls_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / scheme
    assert (
        cli.main(
            [
                "quantize",
                str(tiny_cls_run),
                str(out),
                "--scheme",
                scheme,
                "--latency-examples",
                "4",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    fmt = json.loads((out / "model" / "format.json").read_text())
    assert fmt["format"] == "quantized" and fmt["scheme"] == scheme and len(fmt["layers"]) == 12  # 2 layers x 6 linears
    record = json.loads((out / "cost.json").read_text())
    for side in ("source", "result"):
        assert (
            0 <= record[side]["dev"]["accuracy"] <= 1 and record[side]["batch1_ms"] > 0 and record[side]["size_mb"] > 0
        )
    assert record["machine"]["cpu"] and "torch_threads" in record["machine"]
    assert (out / "cost.md").read_text().count("|") > 10
    # the quantized layers really are quantized, and predictions stay close to the source's
    loaded, source = runs.load_run(out), runs.load_run(tiny_cls_run)
    first = loaded.model.get_submodule(fmt["layers"][0])
    if scheme == "int8-dynamic":
        assert isinstance(first, torch.ao.nn.quantized.dynamic.Linear)
    else:
        assert "torchao" in type(first.weight).__module__
    enc = loaded.tokenizer(["good fun movie", "awful dull plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = loaded.model(**enc).logits, source.model(**enc).logits
    assert (a - b).abs().max() < (0.05 if scheme.startswith("int8") else 0.3)
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("good fun movie\n"))
    assert cli.main(["predict", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("0", "1")


def test_quantize_refuses_a_quantized_source_and_a_non_empty_output(tiny_cls_run, tmp_path, capsys):
    out = tmp_path / "q"
    assert (
        cli.main(["quantize", str(tiny_cls_run), str(out), "--scheme", "int8-dynamic", "--latency-examples", "2"]) == 0
    )
    assert cli.main(["quantize", str(out), str(tmp_path / "q2"), "--scheme", "int8-weight-only"]) == 2
    assert "is a quantized run" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert cli.main(["quantize", str(tiny_cls_run), str(tmp_path / "full"), "--scheme", "int8-dynamic"]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert not any(p.name.startswith(".full.partial") for p in tmp_path.iterdir())


def test_quantized_causal_lm_generates_and_refuses_merge(tiny_lm_run, tmp_path, capsys):
    out = tmp_path / "lm-int8"
    assert (
        cli.main(
            [
                "quantize",
                str(tiny_lm_run),
                str(out),
                "--scheme",
                "int8-dynamic",
                "--latency-examples",
                "2",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    record = json.loads((out / "cost.json").read_text())
    assert (
        abs(record["result"]["dev"]["loss"] - record["source"]["dev"]["loss"]) < 0.05
    )  # loss, not accuracy, for a causal LM
    capsys.readouterr()
    assert cli.main(["generate", str(out), "--prompt", "Say the word good", "--max-new-tokens", "3"]) == 0
    assert cli.main(["merge", str(out), str(tmp_path / "m")]) == 2
    assert "nothing to merge" in capsys.readouterr().err


def test_paired_latency_times_every_model_on_the_same_inputs(tiny_cls_run):
    from tunelab.compress import cost

    loaded = runs.load_run(tiny_cls_run)
    dev = cost.dev_data(loaded.cfg, loaded.tokenizer, loaded.labels, lambda m: None)
    out = cost.paired_latency({"a": loaded.model, "b": loaded.model}, dev, n=4, batch_size=4, rounds=1)
    assert set(out) == {"a", "b"} and all(v["batch1_ms"] > 0 and v["examples"] == 4 for v in out.values())
