"""QLoRA-style LoRA: the frozen base really is int8 (or NF4 on CUDA), it trains through the CLI, and merges to fp32."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch

from tunelab import cli, runs
from tunelab.errors import ConfigError
from tunelab.methods import qlora


def test_int8_base_stores_int8_weights_and_trains_only_the_adapters(tiny_bert_dir):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=2)
    fp32_bytes = sum(
        m.weight.numel() * 4 for n, m in model.named_modules() if n in qlora.base_linears(model, ["classifier"])
    )
    model = qlora.apply(model, qlora.Config(), ["classifier"])
    quantized = [m.base_layer.weight for n, m in model.named_modules() if n.endswith("query")]
    assert quantized and all(w.qdata.dtype == torch.int8 for w in quantized)
    int8_bytes = sum(
        m.weight.qdata.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and hasattr(m.weight, "qdata")
    )
    assert int8_bytes * 4 == fp32_bytes  # every base linear of the stack, at one byte per weight
    assert all("lora_" in n or "classifier" in n for n, p in model.named_parameters() if p.requires_grad)


def test_qlora_run_trains_predicts_and_merges(tiny_bert_dir, sentiment_tsv, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--quiet",
                f"model.name={tiny_bert_dir}",
                f"data.train={sentiment_tsv}",
                "data.text_column=sentence",
                "method=qlora",
                "train.max_steps=3",
                "train.batch_size=8",
                "train.lr=1e-2",
                f"output_dir={out}",
            ]
        )
        == 0
    )
    loaded = runs.load_run(out)
    assert any("torchao" in type(m.weight).__module__ for m in loaded.model.modules() if isinstance(m, torch.nn.Linear))
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("good fun movie\n"))
    assert cli.main(["predict", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("0", "1")
    assert cli.main(["merge", str(out), str(tmp_path / "merged")]) == 0
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "merged")).eval()
    enc = loaded.tokenizer(["good fun movie", "awful plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**enc).logits, loaded.model(**enc).logits, rtol=1e-4, atol=1e-5)


def test_nf4_needs_cuda(tiny_bert_dir):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the NF4 path is exercised by test_nf4_base_on_cuda")
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=2)
    with pytest.raises(ConfigError, match="nf4 needs a CUDA GPU"):
        qlora.apply(model, qlora.Config(base="nf4"), ["classifier"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="NF4 (bitsandbytes 4-bit) needs a CUDA GPU")
def test_nf4_base_on_cuda(tiny_bert_dir):
    pytest.importorskip("bitsandbytes", reason="pip install 'tunelab[cuda]'")
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=2).cuda()
    ids = torch.tensor([[2, 10, 11, 3]], device="cuda")
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model = qlora.apply(model, qlora.Config(base="nf4"), ["classifier"]).cuda()
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert (after - before).abs().max() < 0.1  # 4-bit rounding of a tiny random model, LoRA B = 0
    merged = qlora.merge(model)
    assert not any(type(m).__name__ == "Linear4bit" for m in merged.modules())
