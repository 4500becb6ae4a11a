"""Prefix tuning on BERT-family encoders (tunelab's own route): exact attention, padding, NER, projection."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

from tunelab.methods import METHODS
from tunelab.methods import prefix_encoder as pe

CFG = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _inputs():
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    return {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])}


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@torch.no_grad()
def test_wrapped_attention_equals_attention_over_prefix_and_tokens_by_hand(impl):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**CFG, attn_implementation=impl)).eval()
    pe.wrap(model, n=3, projection_hidden=None)
    layer = model.bert.encoder.layer[0].attention.self
    h = torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    additive = (1 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # (B, 1, 1, T)
    got, _ = layer(h, attention_mask=additive)
    b = layer.base

    def heads(x):  # (B, T, hidden) -> (B, heads, T, hs)
        return x.view(2, 5, 2, 16).transpose(1, 2)

    q, k, v = heads(b.query(h)), heads(b.key(h)), heads(b.value(h))
    k = torch.cat([layer.prefix_key.expand(2, -1, -1, -1), k], 2)
    v = torch.cat([layer.prefix_value.expand(2, -1, -1, -1), v], 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(16)  # (B, heads, T, 3 + T)
    scores[..., 3:] = scores[..., 3:].masked_fill(mask[:, None, None, :] == 0, float("-inf"))
    expected = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 32)
    assert torch.allclose(got, expected, atol=1e-5)


@torch.no_grad()
def test_padding_does_not_change_a_row_and_the_prefix_changes_outputs():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**CFG)).eval()
    before = model(**_inputs()).logits
    model = METHODS["prefix"].apply(model, METHODS["prefix"].Config(num_virtual_tokens=4), ["classifier"])
    batch = model(**_inputs()).logits
    alone = model(input_ids=torch.tensor([[2, 8, 9, 3]])).logits
    assert torch.allclose(batch[1], alone[0], atol=1e-5)
    assert not torch.allclose(before, batch)


def test_token_classification_and_projection_train_only_prefix_and_head(tmp_path):
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(**CFG, num_labels=3))
    cfg = METHODS["prefix"].Config(num_virtual_tokens=2, projection=True, projection_hidden=8)
    model = METHODS["prefix"].apply(model, cfg, ["classifier"])
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("prefix_" in n or n.startswith("classifier.") for n in names)
    assert any("prefix_mlp" in n for n in names)
    logits = model(**_inputs()).logits  # (B, T, labels): one per token, none for the prefix
    assert logits.shape == (2, 5, 3)
    logits.sum().backward()
    assert model.bert.encoder.layer[0].attention.self.prefix_embedding.grad is not None


def test_info_minilm_with_prefix(capsys):
    from tunelab import cli

    assert cli.main(["info", "minilm-l6", "--method", "prefix"]) == 0
    info = json.loads(capsys.readouterr().out)
    # 6 layers x 2 (keys, values) x 20 virtual tokens x 384, plus the 2-label head (384 x 2 + 2)
    assert info["trainable_parameters"] == 6 * 2 * 20 * 384 + 384 * 2 + 2
