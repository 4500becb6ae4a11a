"""Partial fine-tuning: train the top N transformer layers (or parameters matching patterns) plus the task head."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods import base
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = False
IDENTITY_AT_INIT = True  # nothing is added to the model


class Config(Strict):
    name: Literal["freeze"] = "freeze"
    layers: int = Field(2, ge=0, description="Train the top N transformer layers (0 = head only).")
    patterns: list[str] = Field(
        default_factory=list, description="Also train parameters whose name matches any of these regexes."
    )


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    base.freeze_all(model)
    _, layers = base.find_layers(model)
    if cfg.layers > len(layers):
        raise ConfigError(f"method.layers: {cfg.layers} is more than the model's {len(layers)} layers")
    for layer in list(layers)[len(layers) - cfg.layers :]:
        for p in layer.parameters():
            p.requires_grad_(True)
    if cfg.patterns and base.unfreeze_matching(model, cfg.patterns) == 0:
        raise ConfigError(f"method.patterns: no parameter name matches {cfg.patterns}")
    base.unfreeze_modules(model, head)
    return model


def save(model, out_dir: Path) -> None:
    base.save_trainable(model, out_dir)


def load(model: torch.nn.Module, cfg: Config, head: list[str], in_dir: Path) -> torch.nn.Module:
    return base.load_trainable(apply(model, cfg, head), in_dir)


merge = base.no_merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
