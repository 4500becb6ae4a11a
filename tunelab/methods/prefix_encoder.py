"""Prefix tuning for BERT-family encoders: trained key/value vectors put in front of every self-attention layer.

transformers 5 BERT-style models take no ``past_key_values`` for an encoder (their ``cache`` shifts the position
ids and is left out of the bidirectional mask), so peft's prefix tuning cannot reach them. Here each
self-attention module (``query``/``key``/``value`` linears, as BERT, RoBERTa, ELECTRA, MiniLM have) is wrapped:
the base module and its weights stay as they are; the wrapper projects queries, keys and values with the base's
own linears, puts ``num_virtual_tokens`` trained keys and values in front of the keys and values (no position:
they are not tokens), lets every token attend to them (the attention mask gains that many always-visible
columns) and calls the same attention function transformers would. Shapes: queries (B, heads, T, hs); keys and
values (B, heads, P + T, hs). This file is part of the prefix method (methods/prefix.py), not a method itself.
"""

from __future__ import annotations

import torch
from torch import nn

WRAPPER_PARAMS = r"\.prefix_(key|value|embedding|mlp)"


def self_attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every BERT-style self-attention module: one with query, key and value nn.Linear children."""
    found = []
    for name, attn in model.named_modules():
        children = dict(attn.named_children())
        if all(isinstance(children.get(k), nn.Linear) for k in ("query", "key", "value")):
            found.append((name, attn))
    return found


class PrefixSelfAttention(nn.Module):
    """A self-attention module with ``n`` trained key/value vectors per head in front (Li & Liang, 2021).

    With ``projection_hidden`` the prefix is reparameterised (embedding -> MLP -> keys and values), as the paper
    does for stability; otherwise keys and values are trained directly.
    """

    def __init__(self, base: nn.Module, init: torch.Tensor, projection_hidden: int | None):
        super().__init__()
        self.base = base
        self.heads, self.head_size = base.num_attention_heads, base.attention_head_size
        n, hidden = init.shape  # (P, hidden): embeddings of real tokens, so keys and values start in range
        with torch.no_grad():
            keys, values = base.key(init), base.value(init)  # (P, heads * hs)
        if projection_hidden:
            self.prefix_embedding = nn.Parameter(init.clone())
            self.prefix_mlp = nn.Sequential(
                nn.Linear(hidden, projection_hidden), nn.Tanh(), nn.Linear(projection_hidden, 2 * keys.shape[-1])
            )
        else:
            self.prefix_key = nn.Parameter(keys.view(n, self.heads, self.head_size).transpose(0, 1).contiguous())
            self.prefix_value = nn.Parameter(values.view(n, self.heads, self.head_size).transpose(0, 1).contiguous())
        self.projection = bool(projection_hidden)
        self.n = n

    def prefix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefix keys and values, each (heads, P, hs)."""
        if not self.projection:
            return self.prefix_key, self.prefix_value
        kv = self.prefix_mlp(self.prefix_embedding)  # (P, 2 * heads * hs)
        k, v = kv.view(self.n, 2, self.heads, self.head_size).permute(1, 2, 0, 3)  # each (heads, P, hs)
        return k, v

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.bert.modeling_bert import eager_attention_forward

        kwargs.pop("cache", None)  # an encoder keeps no cache; the prefix plays its part
        kwargs.pop("past_key_values", None)
        b = self.base
        shape = (*hidden_states.shape[:-1], -1, self.head_size)
        q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (b.query, b.key, b.value))
        pk, pv = self.prefix()
        batch = hidden_states.shape[0]
        k = torch.cat([pk.to(k.dtype).unsqueeze(0).expand(batch, -1, -1, -1), k], dim=2)  # (B, heads, P + T, hs)
        v = torch.cat([pv.to(v.dtype).unsqueeze(0).expand(batch, -1, -1, -1), v], dim=2)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(b.config._attn_implementation, eager_attention_forward)
        out, weights = attend(
            b,
            q,
            k,
            v,
            widen_mask(attention_mask, self.n),
            dropout=0.0 if not self.training else b.dropout.p,
            scaling=b.scaling,
            **kwargs,
        )
        return out.reshape(*hidden_states.shape[:-1], -1).contiguous(), weights


def widen_mask(mask: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """The attention mask (B, 1, T, T) or (B, 1, 1, T), boolean (True = attend) or additive (0 = attend), with ``n``
    always-visible key columns in front; None stays None (everything visible)."""
    if mask is None:
        return None
    shape = (*mask.shape[:-1], n)
    visible = (
        torch.ones(shape, dtype=torch.bool, device=mask.device)
        if mask.dtype == torch.bool
        else torch.zeros(shape, dtype=mask.dtype, device=mask.device)
    )
    return torch.cat([visible, mask], dim=-1)


def wrap(model: nn.Module, n: int, projection_hidden: int | None, seed: int = 0) -> int:
    """Wrap every self-attention module of ``model`` in place; returns how many. Initial prefixes are projections
    of ``n`` randomly drawn word embeddings (seeded, so ``load`` rebuilds the same structure)."""
    emb = model.get_input_embeddings().weight  # (vocab, hidden)
    gen = torch.Generator().manual_seed(seed)
    modules = self_attention_modules(model)
    for name, attn in modules:
        rows = torch.randint(0, emb.shape[0], (n,), generator=gen)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        init = emb.detach()[rows].to(torch.float32)
        wrapper = PrefixSelfAttention(attn, init, projection_hidden)
        setattr(parent, child, wrapper.train(attn.training))  # a new module starts in training mode: keep the model's
    return len(modules)
