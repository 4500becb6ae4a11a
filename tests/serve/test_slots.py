"""The slot KV cache of continuous batching: rows that join (left-padded prefills), leave (swap with the last row)
and outgrow the buffers still get, at every decode step, the logits of their own sequence run alone without a
cache."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from tunelab.generation.decode import _left_pad
from tunelab.serve.slots import SlotCache


@pytest.fixture(scope="module")
def model():
    cfg = LlamaConfig(
        vocab_size=61,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def _prefill(model, prompts):
    """(per-layer (keys, values), mask (r, T), last logits (r, vocab)) of a left-padded prefill."""
    ids, mask = _left_pad(prompts, 0, "cpu")
    cache = DynamicCache()
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    return [(layer.keys, layer.values) for layer in cache.layers], mask, out.logits[:, -1]


def _alone(model, seq):
    return model(input_ids=torch.tensor([seq])).logits[0, -1]  # (vocab,)


@torch.no_grad()
def test_join_leave_and_grow_match_each_sequence_alone(model):
    seqs = [[3, 7, 9, 11, 2], [5, 6, 7, 8, 9, 10, 12, 13, 14], [40, 41]]
    layers, mask, logits = _prefill(model, seqs)
    slots = SlotCache(layers, rows=1, columns=4)  # too small: joining grows rows and columns
    slots.join(layers, mask)
    rows = [list(s) for s in seqs]
    tokens = logits.argmax(-1)

    def steps(k):
        nonlocal tokens
        for _ in range(k):
            for row, tok in zip(rows, tokens.tolist()):
                row.append(tok)
            m = slots.step_mask()
            got = model(
                input_ids=tokens[:, None], attention_mask=m, position_ids=slots.lengths[:, None], cache=slots
            ).logits[:, -1]
            slots.advance()
            for r, row in enumerate(rows):
                assert torch.allclose(got[r], _alone(model, row), atol=1e-5), f"row {r} after {len(row)} tokens"
            tokens = got.argmax(-1)

    steps(4)
    order = slots.drop([0])  # the first row leaves; the last row takes its slot
    assert order == [2, 1] and slots.lengths.tolist() == [len(rows[2]), len(rows[1])]
    rows, tokens = [rows[i] for i in order], tokens[order]
    new = [21, 22, 23, 24, 25, 26, 27]
    layers, mask, logits = _prefill(model, [new])
    slots.join(layers, mask)
    rows.append(new)
    tokens = torch.cat([tokens, logits.argmax(-1)])
    steps(3)
    assert slots.n == 3
    before = slots.capacity[1]
    long = list(range(1, 60)) * 4  # a 200-token prompt: the columns must grow again
    layers, mask, logits = _prefill(model, [long[:200]])
    slots.join(layers, mask)
    rows.append(long[:200])
    tokens = torch.cat([tokens, logits.argmax(-1)])
    assert slots.capacity[1] > before
    steps(2)
