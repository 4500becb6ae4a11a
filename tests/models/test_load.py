"""models/load.py: model.max_length fitted to the model before anything is saved; unknown names list the aliases;
GGUF models are de-quantised once (later loads read the cached plain model; conversion bars stay quiet)."""

from __future__ import annotations

import pytest
import torch
import yaml

from tunelab import cli
from tunelab.errors import ModelError
from tunelab.models import load as model_load


@pytest.fixture(scope="module")
def short_bert_dir(tmp_path_factory, tiny_bert_dir):
    """The tiny test BERT with a 64-position table."""
    import shutil

    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("short-bert")
    for name in tiny_bert_dir.iterdir():
        if name.name.startswith(("tokenizer", "vocab", "special")):
            shutil.copy(name, folder / name.name)
    cfg = BertConfig.from_pretrained(str(tiny_bert_dir))
    cfg.max_position_embeddings = 64
    BertModel(cfg).save_pretrained(str(folder))
    return folder


def test_explicit_max_length_above_the_limit_is_an_error_naming_it(short_bert_dir):
    src = model_load.resolve(str(short_bert_dir))
    with pytest.raises(
        ModelError,
        match=r"model.max_length 100 is above the limit of model 'x' \(64 positions\); "
        r"set model.max_length=64 or less",
    ):
        model_load.fit_max_length(src, 100, True, "x", print)
    assert model_load.fit_max_length(src, 64, True, "x", print) == 64


def test_default_max_length_is_capped_logged_and_saved(short_bert_dir, sentiment_tsv, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        cli.main(
            [
                "train",
                "--quiet",
                f"model.name={short_bert_dir}",
                f"data.train={sentiment_tsv}",
                "data.text_column=sentence",
                "train.max_steps=1",
                "train.batch_size=8",
                f"output_dir={out}",
            ]
        )
        == 0
    )
    assert "model.max_length: the default 256 is above the limit" in capsys.readouterr().err
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["max_length"] == 64


def test_unknown_bare_name_lists_the_packaged_aliases():
    with pytest.raises(
        ModelError,
        match=r"model 'minilm-l12': not a packaged alias \(did you mean 'minilm-l6'\?\), .*"
        r"packaged aliases: minilm-l6, smollm2-135m",
    ):
        model_load.fit_max_length(model_load.resolve("minilm-l12"), 128, False, "minilm-l12", print)


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
