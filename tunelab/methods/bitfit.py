"""BitFit (Ben Zaken et al., 2022): train only the bias terms (plus the task head)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tunelab.errors import ConfigError
from tunelab.methods import base
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = False  # nothing to merge: the trained biases are the model's own
IDENTITY_AT_INIT = True


class Config(Strict):
    name: Literal["bitfit"] = "bitfit"


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    base.freeze_all(model)
    if base.unfreeze_matching(model, [r"(^|\.)bias$"]) == 0:
        raise ConfigError(
            f"method: bitfit needs bias terms, and {type(model).__name__} has none (Llama-style models have no biases); use lora or ia3"
        )
    base.unfreeze_modules(model, head)
    return model


def save(model, out_dir: Path) -> None:
    base.save_trainable(model, out_dir)


def load(model: torch.nn.Module, cfg: Config, head: list[str], in_dir: Path) -> torch.nn.Module:
    return base.load_trainable(apply(model, cfg, head), in_dir)


merge = base.no_merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
