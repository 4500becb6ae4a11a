"""(IA)^3 (Liu et al., 2022) through peft: learned vectors rescale keys, values and the feed-forward activations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.methods import base, lora
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = True
IDENTITY_AT_INIT = True  # the scaling vectors start at one


class Config(Strict):
    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = Field(
        None,
        description="Layers to rescale, by name suffix; null = peft's default for the architecture (BERT: key, value, output.dense).",
    )
    feedforward_modules: list[str] | None = Field(
        None,
        description="Which of target_modules are feed-forward (their input is rescaled, not their output); null = peft's default.",
    )


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import IA3Config

    kwargs = {"modules_to_save": list(head) or None}
    if cfg.target_modules is not None:
        kwargs["target_modules"] = lora.resolve_targets(model, cfg.target_modules, head)
        ff = cfg.feedforward_modules or []
        kwargs["feedforward_modules"] = [
            n for n in kwargs["target_modules"] if any(n == f or n.endswith("." + f) for f in ff)
        ]
    return base.peft_wrap(model, IA3Config(**kwargs))


save, load, merge = lora.save, lora.load, lora.merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
