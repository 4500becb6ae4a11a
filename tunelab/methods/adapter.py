"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021), written here: no library needed.

An adapter is down-projection -> activation -> up-projection added to a sublayer's output,
h + up(act(down(h))), placed after the output projection and before the residual add.
Houlsby: after the attention output and after the feed-forward block; Pfeiffer: after the
feed-forward block only. The up-projection starts at zero, so training starts from the base
model's outputs. Target layers are wrapped (the base layer kept inside); the model is not subclassed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods import base
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = False  # the activation in the bottleneck makes the update nonlinear
IDENTITY_AT_INIT = True  # up-projection starts at zero

# (attention output projection, feed-forward output projection), relative to one transformer layer
SITES = {
    "bert": ("attention.output.dense", "output.dense"),  # BERT, RoBERTa, MiniLM
    "llama": ("self_attn.o_proj", "mlp.down_proj"),  # Llama, Mistral, Qwen2, SmolLM
    "distilbert": ("attention.out_lin", "ffn.lin2"),
    "gpt2": ("attn.c_proj", "mlp.c_proj"),
}


class Config(Strict):
    name: Literal["adapter"] = "adapter"
    variant: Literal["houlsby", "pfeiffer"] = Field(
        "houlsby", description="houlsby: adapters after attention and feed-forward; pfeiffer: after feed-forward only."
    )
    reduction_factor: int = Field(16, ge=1, le=4096, description="Bottleneck width = hidden size / reduction_factor.")
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field(
        "relu", description="Nonlinearity inside the bottleneck."
    )


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from tunelab.methods.bottleneck import AdaptedLayer, Bottleneck

    base.freeze_all(model)
    _, layers = base.find_layers(model)
    attn, ffn = _sites(layers[0])
    targets = [ffn] if cfg.variant == "pfeiffer" else [attn, ffn]
    for layer in layers:
        for rel in targets:
            parent_name, _, child = rel.rpartition(".")
            parent = layer.get_submodule(parent_name) if parent_name else layer
            old = getattr(parent, child)
            dim = _out_features(old)
            adapter = Bottleneck(dim, cfg.reduction_factor, cfg.activation).to(next(old.parameters()).dtype)
            setattr(parent, child, AdaptedLayer(old, adapter))
    base.unfreeze_matching(model, [r"\.adapter\."])
    base.unfreeze_modules(model, head)
    return model


def _sites(layer: torch.nn.Module) -> tuple[str, str]:
    names = {n for n, _ in layer.named_modules()}
    for attn, ffn in SITES.values():
        if attn in names and ffn in names:
            return attn, ffn
    shown = sorted(n for n in names if n and n.count(".") <= 2)[:20]
    raise ConfigError(
        f"method: adapter does not know where attention and feed-forward outputs are in {type(layer).__name__} "
        f"(known layouts: {', '.join(f'{a} + {f}' for a, f in SITES.values())}; this layer has {shown})"
    )


def _out_features(module: torch.nn.Module) -> int:
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, torch.nn.Linear):
        return module.out_features
    if isinstance(module, Conv1D):  # GPT-2's transposed linear
        return module.nf
    raise ConfigError(f"method: adapter cannot wrap {type(module).__name__} (no output size)")


def save(model, out_dir: Path) -> None:
    base.save_trainable(model, out_dir)


def load(model: torch.nn.Module, cfg: Config, head: list[str], in_dir: Path) -> torch.nn.Module:
    return base.load_trainable(apply(model, cfg, head), in_dir)


merge = base.no_merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
