"""LoRA+ (Hayou et al., 2024): plain LoRA weights, but the B matrices learn `lr_ratio` times faster than A.

The adapter is ordinary LoRA (saved in PEFT format, mergeable); only the optimizer's
parameter groups differ, which the training loop takes from ``param_groups`` below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.methods import base, lora

if TYPE_CHECKING:
    import torch

MERGEABLE = True
IDENTITY_AT_INIT = True  # B starts at zero


class Config(lora.Config):
    name: Literal["loraplus"] = "loraplus"
    lr_ratio: float = Field(
        16.0,
        ge=1.0,
        le=1024.0,
        description="Learning rate of the LoRA B matrices divided by train.lr (LoRA+ eta_B/eta_A).",
    )


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import LoraConfig

    return base.peft_wrap(model, LoraConfig(**lora.peft_kwargs(model, cfg, head)))


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float, cfg: Config) -> list[dict]:
    """Optimizer groups: B matrices at lr * lr_ratio (decayed), every other trainable matrix at lr, 1-D tensors undecayed."""
    groups: dict[str, dict] = {
        "b": {"params": [], "weight_decay": weight_decay, "lr": lr * cfg.lr_ratio},
        "a": {"params": [], "weight_decay": weight_decay, "lr": lr},
        "1d": {"params": [], "weight_decay": 0.0, "lr": lr},
    }
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = "b" if ".lora_B." in name else "1d" if p.ndim < 2 else "a"
        groups[key]["params"].append(p)
    return [g for g in groups.values() if g["params"]]


save, load, merge = lora.save, lora.load, lora.merge
callbacks = base.no_callbacks
