"""Per-document attention for packed rows: same outputs, loss and gradients as unpacked, and no dense mask is built."""

from __future__ import annotations

import pytest
import torch

from tunelab.models import attention
from tunelab.models import load as model_load
from tunelab.tasks import causal_lm


def _lm_loss(model, batch: dict, chunk: int = 0):
    """The task's training loss: forward (chunked head when ``chunk``), then the pure loss."""
    task = causal_lm.CausalLM()
    return task.loss(task.forward(model, batch, chunk), batch)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    src = model_load.resolve(str(tiny_llama_dir))
    model, _ = model_load.load_model(src, causal_lm.CausalLM.auto_class)
    return model.float().eval(), model_load.load_tokenizer(src)


def _feats(n_tokens: list[int], seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in n_tokens:
        ids = torch.randint(5, 400, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * (n // 2) + ids[n // 2 :]})
    return out


def test_document_spans():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 0], [0, 1, 2, 3, 4, 5, 6, 7]])
    assert attention.document_spans(pos) == [[(0, 3), (3, 5), (-6, 8)], [(0, 8)]]
    assert attention.document_spans(torch.arange(6)[None]) is None  # nothing packed: plain causal attention
    assert attention.document_spans(torch.tensor([[0, 0, 1, 0]])) == [[(-1, 1), (1, 3), (-4, 4)]]


def test_packed_forward_equals_each_document_alone(tiny):
    model, tok = tiny
    feats = _feats([7, 1, 12, 5])
    packed = causal_lm.pack(feats, 64)
    assert len(packed) == 1
    batch = causal_lm.collate(
        packed
        + [
            {
                **packed[0],
                "input_ids": packed[0]["input_ids"][:9],
                "labels": packed[0]["labels"][:9],
                "position_ids": packed[0]["position_ids"][:9],
            }
        ],
        tok.pad_token_id,
    )  # a second, shorter row: padded
    with torch.no_grad(), attention.packed_documents(model) as on:
        assert on and model.config._attn_implementation == attention.NAME
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits  # (2, L, vocab)
    assert model.config._attn_implementation == "sdpa"  # restored on exit
    with torch.no_grad():
        start = 0
        for f in feats:
            alone = model(input_ids=torch.tensor([f["input_ids"]]), use_cache=False).logits[0]
            n = len(f["input_ids"])
            torch.testing.assert_close(logits[0, start : start + n], alone, atol=1e-5, rtol=1e-4)
            if start + n <= 9:
                torch.testing.assert_close(logits[1, start : start + n], alone, atol=1e-5, rtol=1e-4)
            start += n


@pytest.mark.parametrize("chunk", [0, 1024])
def test_packed_loss_and_gradients_equal_unpacked(tiny, chunk):
    """fp32: the packed row's summed loss equals the unpacked padded batch's within 1e-4, and so do the gradients."""
    model, tok = tiny
    feats = _feats([9, 4, 15, 6, 11], seed=1)
    model.train()
    try:
        model.zero_grad()
        loss_u, n_u = _lm_loss(model, causal_lm.collate(feats, tok.pad_token_id), chunk=chunk)
        loss_u.backward()
        grads_u = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        with attention.packed_documents(model):
            loss_p, n_p = _lm_loss(model, causal_lm.collate(causal_lm.pack(feats, 32), tok.pad_token_id), chunk=chunk)
            loss_p.backward()
        grads_p = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    finally:
        model.zero_grad()
        model.eval()
    assert n_p == n_u
    assert abs(loss_p.item() - loss_u.item()) < 1e-4
    assert grads_p.keys() == grads_u.keys()
    for name in grads_u:
        torch.testing.assert_close(grads_p[name], grads_u[name], atol=1e-5, rtol=1e-3, msg=name)


def test_no_dense_mask_for_packed_rows(tiny, monkeypatch):
    """The attention function sees no mask for packed rows and splits documents itself; padded batches keep their mask."""
    model, tok = tiny
    seen = []
    real = attention.packed_sdpa

    def spy(module, query, key, value, attention_mask, **kw):
        seen.append(attention_mask)
        return real(module, query, key, value, attention_mask, **kw)

    monkeypatch.setattr(attention, "packed_sdpa", spy)
    feats = _feats([6, 8, 3], seed=2)
    with torch.no_grad(), attention.packed_documents(model):
        model(
            **{
                k: v for k, v in causal_lm.collate(causal_lm.pack(feats, 32), tok.pad_token_id).items() if k != "labels"
            },
            use_cache=False,
        )
        assert seen and all(m is None for m in seen)
        seen.clear()
        model(**{k: v for k, v in causal_lm.collate(feats, tok.pad_token_id).items() if k != "labels"}, use_cache=False)
        assert seen and all(m is not None for m in seen)  # padded rows: transformers' own padding mask, plain SDPA
    attention.register()  # leave the real function registered for later tests


def test_encoders_are_left_alone(tiny_bert_dir):
    model, _ = model_load.load_model(
        model_load.resolve(str(tiny_bert_dir)), "AutoModelForSequenceClassification", num_labels=2
    )
    with attention.packed_documents(model) as on:
        assert not on
