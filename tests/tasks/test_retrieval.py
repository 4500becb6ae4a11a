"""Retrieval embeddings: each distinct text is embedded once (ranking repeats every history per candidate)."""

from __future__ import annotations

import torch

from tunelab.tasks import retrieval


class CountingTokenizer:
    """Wraps a tokenizer and records every text it is asked to encode."""

    def __init__(self, tok):
        self.tok, self.seen = tok, []

    def __call__(self, texts, **kwargs):
        self.seen += list(texts)
        return self.tok(texts, **kwargs)


def test_embed_distinct_embeds_each_text_once_and_keeps_the_order(tiny_bert_dir):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(tiny_bert_dir)).eval()
    tok = CountingTokenizer(AutoTokenizer.from_pretrained(str(tiny_bert_dir)))
    texts = ["good fun movie", "bad", "good fun movie", "a plot", "bad", "good fun movie"]
    got = retrieval.embed_distinct(model, tok, texts, 16)  # (6, d)
    assert sorted(tok.seen) == ["a plot", "bad", "good fun movie"]
    tok.seen = []
    want = retrieval.embed_texts(model, tok, texts, 16)  # every row embedded
    assert len(tok.seen) == 6 and got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)
    assert retrieval.embed_distinct(model, tok, [], 16).shape[0] == 0
