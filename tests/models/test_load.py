"""GGUF models are de-quantised once: later loads read the cached plain model; conversion bars stay quiet."""

from __future__ import annotations

import pytest
import torch

from tunelab.errors import ModelError
from tunelab.models import load as model_load


def test_file_digest_follows_the_content(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"x" * 100)
    b.write_bytes(b"x" * 99 + b"y")
    assert model_load.file_digest(a) != model_load.file_digest(b)
    b.write_bytes(b"x" * 100)
    assert model_load.file_digest(a) == model_load.file_digest(b)


@pytest.mark.real
def test_gguf_is_converted_once_and_quietly(tmp_path, monkeypatch, capfd):
    import transformers

    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    src = model_load.resolve("smollm2-135m")
    first = model_load.converted_gguf(src)
    assert (
        (first / "config.json").is_file() and list(first.glob("*.safetensors")) and (first / "tokenizer.json").is_file()
    )
    err = capfd.readouterr().err
    assert "Converting" not in err and "Writing" not in err and "%|" not in err  # bars only with TUNELAB_PROGRESS=1

    def no_conversion(*args, **kwargs):
        assert "gguf_file" not in kwargs, "converted the GGUF file again"
        return real(*args, **kwargs)

    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_conversion)
    assert model_load.converted_gguf(src) == first
    model, head = model_load.load_model(src, "AutoModelForCausalLM")
    tok = model_load.load_tokenizer(src)
    assert head == [] and next(model.parameters()).dtype == torch.float32
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()
    assert not list((tmp_path / "cache" / "models").glob(".*.tmp"))  # no half-written folder left


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="GGUF file not found"):
        model_load.converted_gguf(model_load.Source(str(tmp_path), "nope.gguf"))
