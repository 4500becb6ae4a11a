"""DoRA (Liu et al., 2024) through peft: each adapted weight is split into a magnitude vector and a direction; LoRA updates the direction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from tunelab.methods import base, lora

if TYPE_CHECKING:
    import torch

MERGEABLE = True
IDENTITY_AT_INIT = True  # B starts at zero and the magnitude starts at the weight's column norms


class Config(lora.Config):
    name: Literal["dora"] = "dora"


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import LoraConfig

    return base.peft_wrap(model, LoraConfig(**lora.peft_kwargs(model, cfg, head), use_dora=True))


save, load, merge = lora.save, lora.load, lora.merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
