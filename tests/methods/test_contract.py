"""The method contract: every method in METHODS, on a tiny BERT classifier and a tiny Llama causal LM.

Only the intended parameters train (and `tunelab info` reports the same count); methods that
start from the identity leave outputs unchanged; save -> load is bit-exact and restores the
classifier head; merging a mergeable method keeps the outputs.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from tunelab.errors import ConfigError
from tunelab.methods import METHODS, base
from tunelab.models import load as model_load

# what each method may train, besides the task head
INTENDED = {
    "full": r".",
    "freeze": r"(encoder\.layer|\.layers)\.1\.",
    "bitfit": r"\.bias$",
    "lora": r"\.lora_[AB]\.",
    "qlora": r"\.lora_[AB]\.",
    "rslora": r"\.lora_[AB]\.",
    "loraplus": r"\.lora_[AB]\.",
    "dora": r"\.lora_([AB]|magnitude_vector)\.",
    "adalora": r"\.lora_[ABE]\.",
    "ia3": r"\.ia3_l\.",
    "adapter": r"\.adapter\.",
    "prefix": r"^prompt_encoder\.|\.prefix_(key|value|embedding|mlp)",  # peft (causal LM) or tunelab's encoder route
    "p-tuning": r"^prompt_encoder\.",
    "prompt-tuning": r"^prompt_encoder\.",
}
HEAD = r"(^|\.)classifier\.|modules_to_save"
UNSUPPORTED = {("bitfit", "llama"): "has none"}
KINDS = ["bert", "llama"]
OPTIONS = {"freeze": {"layers": 1}}  # the tiny models have 2 layers; train only the top one


def config(name):
    return METHODS[name].Config(**OPTIONS.get(name, {}))


def build(kind, dirs):
    """(fresh base model, head names, inputs) for one model kind; the head is random each call, like a new run."""
    folder = dirs[kind]
    src = model_load.resolve(str(folder))
    tok = model_load.load_tokenizer(src)
    if kind == "bert":
        model, head = model_load.load_model(src, "AutoModelForSequenceClassification", num_labels=2)
    else:
        model, head = model_load.load_model(src, "AutoModelForCausalLM")
    enc = tok(["the movie was very good", "bad plot"], padding=True, return_tensors="pt")
    inputs = {k: v for k, v in enc.items() if k != "token_type_ids" or kind == "bert"}
    return model.eval(), head, inputs


@pytest.fixture(scope="module")
def dirs(tiny_bert_dir, tiny_llama_contract):
    return {"bert": tiny_bert_dir, "llama": tiny_llama_contract}


def applied(name, kind, dirs):
    model, head, inputs = build(kind, dirs)
    module = METHODS[name]
    if (name, kind) in UNSUPPORTED:
        with pytest.raises(ConfigError, match=UNSUPPORTED[(name, kind)]):
            module.apply(model, config(name), head)
        pytest.skip(f"{name} does not support {kind} (clear ConfigError checked)")
    return module, module.apply(model, config(name), head), head, inputs


def out(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def perturb(model, seed=1):
    """Move every trainable tensor away from its init, so round-trips test real values (e.g. LoRA B != 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(METHODS))
def test_only_intended_parameters_train(name, kind, dirs):
    module, model, head, _ = applied(name, kind, dirs)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, f"{name} trains nothing"
    wrong = [n for n in trainable if not (re.search(INTENDED[name], n) or re.search(HEAD, n))]
    assert not wrong, f"{name} trains unintended parameters: {wrong[:5]}"
    if kind == "bert":  # the head always trains
        assert any(re.search(HEAD, n) for n in trainable)
        if name != "full":
            assert not any("word_embeddings" in n for n in trainable)


@pytest.mark.parametrize("name", list(METHODS))
def test_trainable_count_matches_tunelab_info(name, dirs, capsys):
    from tunelab import cli

    _, model, _, _ = applied(name, "bert", dirs)
    assert (
        cli.main(
            ["info", str(dirs["bert"]), "--method", name, "--set"]
            + [f"method.{k}={v}" for k, v in OPTIONS.get(name, {}).items()]
        )
        == 0
    )
    info = json.loads(capsys.readouterr().out)
    assert info["trainable_parameters"] == base.count_parameters(model)[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.IDENTITY_AT_INIT])
def test_identity_at_init(name, kind, dirs):
    model, head, inputs = build(kind, dirs)
    before = out(model, inputs)
    if (name, kind) in UNSUPPORTED:
        pytest.skip("unsupported (checked elsewhere)")
    after = out(METHODS[name].apply(model, config(name), head).eval(), inputs)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(METHODS))
def test_save_load_round_trip_is_exact(name, kind, dirs, tmp_path):
    module, model, head, inputs = applied(name, kind, dirs)
    perturb(model)
    model.eval()
    expected = out(model, inputs)
    head_before = {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if re.search(HEAD, n) and ".original_module." not in n
    }
    module.save(model, tmp_path)
    fresh, head2, _ = build(kind, dirs)  # new random head: load must restore the trained one
    loaded = module.load(fresh, config(name), head2, tmp_path).eval()
    assert torch.equal(out(loaded, inputs), expected)
    if kind == "bert":
        assert head_before, "no head parameters found"
        params = dict(loaded.named_parameters())
        for n, t in head_before.items():
            assert torch.equal(params[n], t), n


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.MERGEABLE])
def test_merged_equals_unmerged(name, kind, dirs):
    module, model, _, inputs = applied(name, kind, dirs)
    perturb(model)
    model.eval()
    expected = out(model, inputs)
    merged = module.merge(model).eval()
    assert not any("lora_" in n or "ia3_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(out(merged, inputs), expected, rtol=1e-4, atol=1e-5)
