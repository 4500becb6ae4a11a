"""Keep a subset of a model's transformer layers (``model.layers``): a smaller student initialised from a larger
model's own layers, as DistilBERT was (every other layer of BERT).

The layer stack is found by shape (``methods.base.find_layers``), so it works for BERT-like encoders and decoder LMs
alike. The kept layers are renumbered 0..n-1 and the config says n layers, so ``save_pretrained`` writes a model that
loads as an n-layer model, and a run folder rebuilds the same student from ``model.name`` + ``model.layers``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.errors import ConfigError

if TYPE_CHECKING:
    import torch


def check(layers: list[int], available: int, key: str = "model.layers") -> None:
    """Refuse an empty, unsorted, repeated or out-of-range layer list, naming the model's layer count."""
    if not layers:
        raise ConfigError(f"{key}: give at least one layer index")
    if sorted(set(layers)) != list(layers):
        raise ConfigError(f"{key}: {layers}: indices must be increasing and distinct")
    if layers[0] < 0 or layers[-1] >= available:
        raise ConfigError(f"{key}: {layers}: the model has layers 0..{available - 1}")


def keep_layers(model: torch.nn.Module, layers: list[int]) -> torch.nn.Module:
    """Drop every transformer layer not in ``layers`` (in place; returns the model).

    Attention modules of decoder LMs index their KV cache by ``layer_idx``: the kept ones are renumbered, and
    per-layer config lists (``layer_types``) are cut to the kept layers.
    """
    import torch

    from tunelab.methods.base import find_layers

    name, stack = find_layers(model)
    check(list(layers), len(stack))
    kept = torch.nn.ModuleList([stack[i] for i in layers])
    for new_index, block in enumerate(kept):
        for sub in block.modules():
            if "layer_idx" in vars(sub):  # transformers' attention modules store their cache slot as a plain int
                sub.layer_idx = new_index
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, kept)
    config = model.config
    config.num_hidden_layers = len(kept)
    layer_types = config.to_dict().get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) == len(stack):
        config.layer_types = [layer_types[i] for i in layers]
    return model
