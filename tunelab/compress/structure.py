"""Pruning mechanics: magnitude masks, first-order Taylor importance of heads and FFN neurons, and shrinking linears.

Written by hand: transformers 5 dropped ``prune_heads``, and nothing prunes FFN neurons. A head or a neuron is
removed exactly by deleting its columns of the output projection (attention output / FFN down projection) and the
matching rows of the input projections; its importance is the first-order Taylor estimate of the loss change
when those output-projection columns are zeroed: |sum over columns of grad * weight|, per batch, summed over
batches (Michel et al., 2019; Molchanov et al., 2019). Scores are L2-normalised per layer, then ranked globally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from tunelab.errors import TunelabError


@dataclass(frozen=True)
class Layout:
    """Where heads and FFN neurons live inside one transformer layer (names relative to the layer)."""

    heads_in: tuple[str, ...] | None  # projections whose output rows are grouped by head (None: heads not prunable)
    heads_out: str | None  # projection whose input columns are grouped by head
    ffn_in: tuple[str, ...]  # projections whose output rows are the FFN neurons
    ffn_out: str  # projection whose input columns are the FFN neurons


BERT = Layout(
    ("attention.self.query", "attention.self.key", "attention.self.value"),
    "attention.output.dense",
    ("intermediate.dense",),
    "output.dense",
)
# Llama-family attention groups query heads over shared key/value heads: removing query heads unevenly would break
# the grouping, so only FFN neurons are pruned there.
LLAMA = Layout(None, None, ("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj")
LAYOUTS = {
    "bert": BERT,
    "roberta": BERT,
    "xlm-roberta": BERT,
    "electra": BERT,
    "llama": LLAMA,
    "mistral": LLAMA,
    "qwen2": LLAMA,
}


def layout_for(model) -> Layout:
    kind = getattr(model.config, "model_type", None)
    if kind not in LAYOUTS:
        raise TunelabError(
            f"structured pruning: no layout for model type '{kind}' (supported: {', '.join(sorted(LAYOUTS))}); "
            "unstructured magnitude pruning (--method magnitude) works for any model"
        )
    return LAYOUTS[kind]


def layers(model) -> tuple[str, torch.nn.ModuleList]:
    from tunelab.methods.base import find_layers

    return find_layers(model)


def head_size(model) -> int:
    cfg = model.config
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


# ---------------------------------------------------------------- unstructured


def magnitude_masks(model, names: list[str], sparsity: float) -> dict[str, torch.Tensor]:
    """Per linear layer, a boolean mask keeping the (1 - sparsity) largest-magnitude weights."""
    masks = {}
    for name in names:
        w = model.get_submodule(name).weight.detach()
        k = int(round(sparsity * w.numel()))
        if k == 0:
            masks[name] = torch.ones_like(w, dtype=torch.bool)
            continue
        threshold = w.abs().flatten().kthvalue(k).values
        masks[name] = w.abs() > threshold
    return masks


@torch.no_grad()
def apply_masks(model, masks: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        model.get_submodule(name).weight.mul_(mask)


def sparsity_of(model, names: list[str]) -> float:
    """Fraction of zero weights over the named linear layers."""
    zeros = total = 0
    for name in names:
        w = model.get_submodule(name).weight
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(total, 1)


# ---------------------------------------------------------------- importance


def taylor_importance(
    model, layout: Layout, batches: Iterable[dict], loss_fn: Callable
) -> dict[str, list[torch.Tensor]]:
    """Importance of each head (per layer, (heads,)) and FFN neuron (per layer, (neurons,)) on the given batches."""
    stack, blocks = layers(model)
    outs = {"ffn": [b.get_submodule(layout.ffn_out).weight for b in blocks]}
    if layout.heads_out:
        outs["heads"] = [b.get_submodule(layout.heads_out).weight for b in blocks]
    watched = [w for ws in outs.values() for w in ws]
    saved = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for w in watched:
        w.requires_grad_(True)
    scores = {k: [torch.zeros(w.shape[1]) for w in ws] for k, ws in outs.items()}  # per input column of the projection
    model.eval()  # no dropout: the scores describe the deterministic model
    try:
        for batch in batches:
            loss, _ = loss_fn(model, batch)
            grads = torch.autograd.grad(loss, watched)
            i = 0
            for k, ws in outs.items():
                for j, w in enumerate(ws):
                    scores[k][j] += (grads[i] * w.detach()).sum(0).abs()  # (in_features,)
                    i += 1
    finally:
        for p in model.parameters():
            p.requires_grad_(saved[id(p)])
    if "heads" in scores:
        d = head_size(model)
        scores["heads"] = [s.view(-1, d).sum(-1) for s in scores["heads"]]  # (heads,): columns grouped by head
    return scores


def choose_kept(scores: list[torch.Tensor], fraction: float, min_keep: int = 1) -> list[list[int]]:
    """Indices to keep per layer when removing ``fraction`` of all units: scores L2-normalised per layer, ranked globally.

    Every layer keeps at least ``min_keep`` units (a layer with nothing left would have no attention / no FFN).
    """
    normed = [s / s.norm().clamp_min(1e-12) for s in scores]
    ranked = sorted(((float(v), layer, idx) for layer, s in enumerate(normed) for idx, v in enumerate(s.tolist())))
    n_remove = int(round(fraction * sum(len(s) for s in scores)))
    removed: list[set[int]] = [set() for _ in scores]
    for _, layer, idx in ranked:
        if n_remove == 0:
            break
        if len(scores[layer]) - len(removed[layer]) > min_keep:
            removed[layer].add(idx)
            n_remove -= 1
    return [[i for i in range(len(s)) if i not in removed[layer]] for layer, s in enumerate(scores)]


# ---------------------------------------------------------------- shrinking


def shrink_linear(linear: torch.nn.Linear, keep: torch.Tensor, dim: int) -> torch.nn.Linear:
    """A new Linear with only the kept output rows (dim 0) or input columns (dim 1)."""
    weight = linear.weight.detach().index_select(dim, keep).clone()
    new = torch.nn.Linear(
        weight.shape[1], weight.shape[0], bias=linear.bias is not None, dtype=weight.dtype, device=weight.device
    )
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach().index_select(0, keep))
    new.weight.requires_grad_(linear.weight.requires_grad)
    return new


def _replace(module: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, child, new)


def prune_units(model, layout: Layout, kept: list[list[int]], kind: str) -> int:
    """Remove heads (``kind="heads"``) or FFN neurons (``"ffn"``) not in ``kept``; returns how many were removed."""
    _, blocks = layers(model)
    ins, out = (layout.heads_in, layout.heads_out) if kind == "heads" else (layout.ffn_in, layout.ffn_out)
    unit = head_size(model) if kind == "heads" else 1
    removed = 0
    for block, keep in zip(blocks, kept):
        total = block.get_submodule(out).in_features // unit
        removed += total - len(keep)
        if len(keep) == total:
            continue
        idx = torch.tensor([u * unit + j for u in keep for j in range(unit)], dtype=torch.long)  # columns of kept units
        for name in ins:
            _replace(block, name, shrink_linear(block.get_submodule(name), idx, 0))
        _replace(block, out, shrink_linear(block.get_submodule(out), idx, 1))
        if kind == "heads":  # keep the attention module's bookkeeping true (its forward infers the head count)
            attn = block.get_submodule(layout.heads_in[0].rpartition(".")[0])
            attn.num_attention_heads, attn.all_head_size = len(keep), len(keep) * unit
    return removed


def reshape_linears(model, shapes: dict[str, list[int]]) -> int:
    """Give every named linear layer the recorded (out, in) shape (fresh weights; the caller loads the stored ones)."""
    changed = 0
    for name, (n_out, n_in) in shapes.items():
        linear = model.get_submodule(name)
        if (linear.out_features, linear.in_features) != (n_out, n_in):
            _replace(model, name, torch.nn.Linear(n_in, n_out, bias=linear.bias is not None, dtype=linear.weight.dtype))
            changed += 1
    return changed


def count_units(model, layout: Layout) -> dict[str, int]:
    """Heads and FFN neurons left in the model."""
    _, blocks = layers(model)
    out = {"ffn_neurons": sum(b.get_submodule(layout.ffn_out).in_features for b in blocks)}
    if layout.heads_out:
        out["heads"] = sum(b.get_submodule(layout.heads_out).in_features for b in blocks) // head_size(model)
    return out
