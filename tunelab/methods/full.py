"""Full fine-tuning: every parameter trains. Saved as a plain HF model directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tunelab.methods import base
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = False  # nothing to merge: the weights are the model
IDENTITY_AT_INIT = True  # nothing is added to the model


class Config(Strict):
    name: Literal["full"] = "full"


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def save(model, out_dir: Path) -> None:
    model.save_pretrained(str(out_dir))


def load(model: torch.nn.Module, cfg: Config, head: list[str], in_dir: Path) -> torch.nn.Module:
    """Load weights saved by ``save`` into a freshly built base model of the same architecture."""
    from safetensors.torch import load_file

    files = sorted(Path(in_dir).glob("model*.safetensors"))
    state: dict = {}
    for f in files:
        state.update(load_file(str(f)))
    model.load_state_dict(state, strict=False)
    return model


merge = base.no_merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
