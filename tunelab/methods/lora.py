"""LoRA (Hu et al., 2021) through peft: low-rank updates on chosen linear layers; the task head trains in full and is saved with the adapter."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods import base
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = True
IDENTITY_AT_INIT = True  # B starts at zero


class Config(Strict):
    name: Literal["lora"] = "lora"
    r: int = Field(8, ge=1, le=4096, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (update is scaled by alpha/r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Linear layers to adapt, by name suffix (e.g. [query, value]) or all-linear (never the task head).",
    )


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import LoraConfig

    return base.peft_wrap(model, LoraConfig(**peft_kwargs(model, cfg, head)))


def peft_kwargs(model: torch.nn.Module, cfg: Config, head: list[str]) -> dict:
    """LoraConfig arguments shared by the LoRA family (rsLoRA, DoRA, LoRA+ reuse this)."""
    return {
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": resolve_targets(model, cfg.target_modules, head),
        "modules_to_save": list(head) or None,
    }


def resolve_targets(model: torch.nn.Module, targets, head: list[str]) -> list[str]:
    """Full module names of the linear layers to adapt, never inside the task head."""
    import torch

    linear = [
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not any(n == h or n.startswith(h + ".") for h in head)
    ]
    if targets == "all-linear":
        chosen = [n for n in linear if not n.endswith("lm_head")]
    else:
        chosen = [n for n in linear if any(n == t or n.endswith("." + t) for t in targets)]
    if not chosen:
        names = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ConfigError(f"method.target_modules: {targets} matches no linear layer; this model has {names}")
    return chosen


def save(model, out_dir: Path) -> None:
    base.peft_save(model, out_dir)


def load(model: torch.nn.Module, cfg: Config, head: list[str], in_dir: Path) -> torch.nn.Module:
    return base.peft_load(model, in_dir)


def merge(model) -> torch.nn.Module:
    """Fold the low-rank update into the base weights; returns the plain model."""
    return model.merge_and_unload()


param_groups, callbacks = base.default_param_groups, base.no_callbacks
