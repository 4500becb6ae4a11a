"""The greedy decode loop produces exactly generate()'s tokens (left-padded batches, both caches, a LoRA model)."""

from __future__ import annotations

import pytest
import torch

from tunelab.generation import GenerationConfig, greedy
from tunelab.models import load as model_load


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    src = model_load.resolve(str(tiny_llama_dir))
    model, _ = model_load.load_model(src, "AutoModelForCausalLM")
    return model.eval(), model_load.load_tokenizer(src)


def _batch(rows, pad_id):
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _reference(model, ids, mask, n, eos, pad):
    return model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=n,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos,
        pad_token_id=pad,
        temperature=None,
        top_k=None,
        top_p=None,
    )[:, ids.shape[1] :]


@pytest.mark.parametrize("static", [True, False])
def test_greedy_equals_generate_on_left_padded_batches(tiny, static):
    model, tok = tiny
    rows = [tok(t)["input_ids"] for t in ("the movie was good and", "a", "hello world this is fun")]
    ids, mask = _batch(rows, tok.pad_token_id)
    # a frequent token as an extra EOS so rows finish at different steps (and finished rows continue with padding)
    ref = _reference(model, ids, mask, 24, [tok.eos_token_id], tok.pad_token_id)
    eos = [tok.eos_token_id, int(ref[0, 3])]
    ref = _reference(model, ids, mask, 24, eos, tok.pad_token_id)
    ours = greedy.greedy(model, ids, mask, 24, eos, tok.pad_token_id, static_cache=static)
    assert torch.equal(ours, ref[:, : ours.shape[1]])
    assert (ours[0, 4:] == tok.pad_token_id).all()  # row 0 ended at its EOS; the others went on


def test_greedy_with_a_lora_model_and_early_stop(tiny):
    from tunelab.methods import lora

    model, tok = tiny
    wrapped = lora.apply(model, lora.Config(r=4), [])
    try:
        with torch.no_grad():
            for name, p in wrapped.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)  # a non-zero update, so the adapter matters
        ids, mask = _batch([tok("the plot")["input_ids"]], tok.pad_token_id)
        ref = _reference(wrapped, ids, mask, 10, [tok.eos_token_id], tok.pad_token_id)
        assert torch.equal(greedy.greedy(wrapped, ids, mask, 10, [tok.eos_token_id], tok.pad_token_id), ref)
        seen = []
        short = greedy.greedy(
            wrapped,
            ids,
            mask,
            10,
            [tok.eos_token_id],
            tok.pad_token_id,
            on_token=lambda t: seen.append(t) or len(seen) == 3,
        )
        assert torch.equal(short, ref[:, :3])
    finally:
        wrapped.unload()


def test_supports_only_plain_greedy(tiny):
    model, _ = tiny
    assert greedy.supports(model, GenerationConfig())
    for kw in (
        {"do_sample": True},
        {"num_beams": 2},
        {"repetition_penalty": 1.2},
        {"no_repeat_ngram_size": 2},
        {"stop": ["."]},
    ):
        assert not greedy.supports(model, GenerationConfig(**kw)), kw
    model.generation_config.suppress_tokens = [5]
    try:
        assert not greedy.supports(
            model, GenerationConfig()
        )  # generate() would change the logits: leave it to generate()
    finally:
        model.generation_config.suppress_tokens = None
