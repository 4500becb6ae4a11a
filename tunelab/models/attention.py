"""Exact per-document attention for packed rows, without a dense (L x L) mask.

A packed row holds several documents back to back; its ``position_ids`` restart at 0 where each one
begins. transformers' own SDPA path turns that into a dense block-diagonal (batch, 1, L, L) mask, so a
512-token row pays the whole 512 x 512 score matrix even when it holds five 100-token documents, and
the masked SDPA cannot take the fast causal kernel. Here each document runs through SDPA on its own
with ``is_causal=True``: the work is the sum of Li^2 instead of L^2, no mask is built, and the result
is the same attention (tests/models/test_attention.py checks it against the unpacked forward).

It plugs in through transformers' attention-function interface (``AttentionInterface`` and
``AttentionMaskInterface``, its documented extension point) under the name ``tunelab_packed_sdpa``;
every call that is not a packed row without a padding mask (padded batches, a KV cache, generation)
goes to transformers' ``sdpa_attention_forward`` and ``sdpa_mask`` unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

NAME = "tunelab_packed_sdpa"


def document_spans(position_ids: torch.Tensor) -> list[list[tuple[int, int]]] | None:
    """(start, end) of each document per row, from position ids that restart at 0; None if no row is packed.

    position_ids (batch, L) or (1, L). Consecutive length-1 spans (right padding gets position 0) are merged
    into one span marked by a negative start (-start - 1): a length-1 document attends only to itself.
    """
    starts = position_ids == 0  # (batch, L)
    if int(starts[:, 1:].sum()) == 0:
        return None  # one document per row: plain causal attention
    out = []
    length = position_ids.shape[-1]
    for row in starts.tolist():
        begin = [i for i, s in enumerate(row) if s] or [0]
        if begin[0] != 0:
            begin = [0] + begin
        spans: list[tuple[int, int]] = []
        for s, e in zip(begin, begin[1:] + [length]):
            if e - s == 1 and spans and spans[-1][0] < 0 and spans[-1][1] == s:
                spans[-1] = (spans[-1][0], e)  # extend a run of single tokens
            else:
                spans.append((-s - 1, e) if e - s == 1 else (s, e))
        out.append(spans)
    return out


def packed_sdpa(
    module,
    query,
    key,
    value,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
):
    """transformers attention function: per-document causal SDPA for packed rows, plain SDPA otherwise.

    query (batch, heads, L, head_dim); key/value (batch, kv_heads, L, head_dim); returns (batch, L, heads, head_dim).
    """
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    layer = module  # a transformers attention module (its config attributes, not a tunelab protocol)
    causal = is_causal if is_causal is not None else getattr(layer, "is_causal", False)
    q_len = query.shape[2]
    spans = None
    if attention_mask is None and position_ids is not None and causal and q_len > 1 and key.shape[2] == q_len:
        spans = document_spans(position_ids.expand(query.shape[0], -1))
    if spans is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    groups = getattr(layer, "num_key_value_groups", 1)
    rows = []
    for b, row in enumerate(spans):
        pieces = []
        for s, e in row:
            if s < 0:  # single-token documents (or padding): softmax over one key is 1, the output is its value
                v = repeat_kv(value[b : b + 1, :, -s - 1 : e], groups)  # (1, heads, n, head_dim)
                pieces.append(v.transpose(1, 2))
                continue
            out, _ = sdpa_attention_forward(
                module,
                query[b : b + 1, :, s:e],
                key[b : b + 1, :, s:e],
                value[b : b + 1, :, s:e],
                None,
                dropout=dropout,
                scaling=scaling,
                is_causal=True,
            )
            pieces.append(out)  # (1, e - s, heads, head_dim)
        rows.append(torch.cat(pieces, dim=1))
    return torch.cat(rows, dim=0), None


def packed_mask(*args, attention_mask=None, **kwargs):
    """Mask function for the same name: no mask for rows without padding and without cached or prefix keys (the
    attention splits packed documents itself); otherwise transformers' own SDPA mask."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None and kwargs.get("q_length") == kwargs.get("kv_length") and not kwargs.get("kv_offset"):
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> None:
    """Make ``tunelab_packed_sdpa`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, packed_sdpa)
    AttentionMaskInterface.register(NAME, packed_mask)


def supports(model: torch.nn.Module) -> bool:
    """Whether the model runs transformers' SDPA attention in causal attention modules (decoder LMs).

    Sliding-window models are left alone: their window lives in the mask this module leaves out.
    """
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if getattr(config, "sliding_window", None) or "sliding" in str(getattr(config, "layer_types", None) or ""):
        return False
    return any(getattr(m, "is_causal", False) is True for m in model.modules() if "Attention" in type(m).__name__)


@contextlib.contextmanager
def packed_documents(model: torch.nn.Module) -> Iterator[bool]:
    """Inside the block the model attends per document in packed rows (yields whether it applies); sdpa again on exit."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not supports(inner):
        yield False
        return
    register()
    inner.set_attn_implementation(NAME)
    try:
        yield True
    finally:
        inner.set_attn_implementation("sdpa")
