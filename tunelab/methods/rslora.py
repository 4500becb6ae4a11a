"""rsLoRA (Kalajdzievski, 2023) through peft: LoRA scaled by alpha/sqrt(r) instead of alpha/r, so higher ranks keep learning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from tunelab.methods import base, lora

if TYPE_CHECKING:
    import torch

MERGEABLE = True
IDENTITY_AT_INIT = True  # B starts at zero


class Config(lora.Config):
    name: Literal["rslora"] = "rslora"


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import LoraConfig

    return base.peft_wrap(model, LoraConfig(**lora.peft_kwargs(model, cfg, head), use_rslora=True))


save, load, merge = lora.save, lora.load, lora.merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
