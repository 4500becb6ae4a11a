"""`tunelab merge`: plain HF directory with equal outputs; PEFT interop; refusals."""

from __future__ import annotations

import pytest
import torch

from tests.methods.test_hooks import run_cfg
from tunelab import cli, runs
from tunelab.errors import TunelabError
from tunelab.recipes import finetune, merge


def trained(tmp_path, tiny_bert_dir, method):
    cfg = run_cfg(tmp_path, tiny_bert_dir, f"method={method}", "train.max_steps=4")
    finetune.run(cfg, quiet=True, log=lambda m: None)
    return tmp_path / "run"


def logits(model, tok):
    enc = tok(["the movie was very good", "bad plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**enc).logits


def test_lora_run_merges_into_a_plain_model_with_equal_outputs(tmp_path, tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    run_dir = trained(tmp_path, tiny_bert_dir, "lora")
    loaded = runs.load_run(run_dir)
    expected = logits(loaded.model, loaded.tokenizer)
    assert cli.main(["merge", str(run_dir), str(tmp_path / "merged")]) == 0
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "merged"))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "merged"))
    assert type(plain).__name__ == "BertForSequenceClassification"
    torch.testing.assert_close(logits(plain, tok), expected, rtol=1e-4, atol=1e-5)
    assert plain.config.id2label == {0: "0", 1: "1"}


def test_lora_adapter_loads_with_peft_directly(tmp_path, tiny_bert_dir):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    run_dir = trained(tmp_path, tiny_bert_dir, "lora")
    loaded = runs.load_run(run_dir)
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=2)
    peft_model = PeftModel.from_pretrained(base, str(run_dir / "model"))
    assert torch.equal(logits(peft_model, loaded.tokenizer), logits(loaded.model, loaded.tokenizer))


def test_merge_refuses_a_non_empty_folder(tmp_path, tiny_bert_dir):
    run_dir = trained(tmp_path, tiny_bert_dir, "lora")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(TunelabError, match="busy: exists and is not empty"):
        merge.run(run_dir, tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_adapter_run_cannot_merge_but_loads_through_tunelab(tmp_path, tiny_bert_dir):
    run_dir = trained(tmp_path, tiny_bert_dir, "adapter")
    with pytest.raises(TunelabError, match="method 'adapter' adds layers or inputs that cannot be folded"):
        merge.run(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    loaded = runs.load_run(run_dir)
    assert logits(loaded.model, loaded.tokenizer).shape == (2, 2)
