"""Prefix tuning (Li & Liang, 2021) through peft: trained key/value vectors are prepended in every attention layer.

peft feeds the prefix through ``past_key_values``. Llama-style causal LMs still accept it in
transformers 5; BERT-style encoders there take a ``cache`` argument instead, which peft 0.21
does not fill, so prefix tuning of an encoder classifier is refused with a ConfigError
(use prompt-tuning or p-tuning there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods import base, lora
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = False  # the prefix is extra attention input, not a weight delta
IDENTITY_AT_INIT = False  # random prefixes change attention from the start


class Config(Strict):
    name: Literal["prefix"] = "prefix"
    num_virtual_tokens: int = Field(20, ge=1, le=512, description="Prefix length (key/value vectors per layer).")
    projection: bool = Field(
        False,
        description="Reparameterise the prefix through a two-layer MLP (more stable, more parameters while training).",
    )
    projection_hidden: int = Field(128, ge=1, description="Hidden size of that MLP.")


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import PrefixTuningConfig

    _check_past_key_values(model)
    return base.prompt_wrap(
        model,
        PrefixTuningConfig,
        head,
        cfg.num_virtual_tokens,
        prefix_projection=cfg.projection,
        encoder_hidden_size=cfg.projection_hidden,
    )


def _check_past_key_values(model: torch.nn.Module) -> None:
    """peft's classifier path needs ``past_key_values`` in the model's (or its backbone's) forward signature."""
    import inspect

    if base.peft_task_type(model) == "CAUSAL_LM":
        return  # peft passes the prefix as a keyword that causal LMs accept
    backbone = getattr(model, "base_model", model)
    for fn in (model.forward, backbone.forward):
        if "past_key_values" in inspect.signature(fn).parameters:
            return
    raise ConfigError(
        f"method: prefix tuning needs a model whose forward takes past_key_values; {type(model).__name__} "
        "(transformers 5) does not, so peft cannot insert the prefix; use prompt-tuning or p-tuning for this model"
    )


save, load, merge = lora.save, lora.load, base.no_merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
