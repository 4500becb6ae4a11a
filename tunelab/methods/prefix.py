"""Prefix tuning (Li & Liang, 2021): trained key/value vectors are prepended in every attention layer.

Causal LMs go through peft, which feeds the prefix as ``past_key_values`` (Llama-style models accept it in
transformers 5). BERT-family encoders there take no usable ``past_key_values``, so for them tunelab wraps each
self-attention module with its own prefix keys and values (methods/prefix_encoder.py): encoder classifiers and
NER models get exact prefix tuning; the task head trains alongside and is saved with the prefixes.
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

    if _encoder_route(model):
        return _apply_encoder(model, cfg, head)
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


def _encoder_route(model) -> bool:
    """A model without past_key_values whose self-attention tunelab can wrap (BERT family)."""
    from tunelab.methods import prefix_encoder

    return base.peft_task_type(model) != "CAUSAL_LM" and bool(prefix_encoder.self_attention_modules(model))


def _apply_encoder(model, cfg: Config, head: list[str]):
    from tunelab.methods import prefix_encoder

    base.freeze_all(model)
    prefix_encoder.wrap(model, cfg.num_virtual_tokens, cfg.projection_hidden if cfg.projection else None)
    for p in model.parameters():  # the wrappers' own parameters (the wrapped base modules stay frozen)
        p.requires_grad_(False)
    base.unfreeze_matching(model, [prefix_encoder.WRAPPER_PARAMS])
    base.unfreeze_modules(model, head)
    return model


def save(model, out_dir) -> None:
    from peft import PeftModel

    if isinstance(model, PeftModel):
        lora.save(model, out_dir)
    else:  # the encoder route: prefixes and head as trainable.safetensors
        base.save_trainable(model, out_dir)


def load(model, cfg: Config, head: list[str], in_dir):
    if _encoder_route(model):
        return base.load_trainable(_apply_encoder(model, cfg, head), in_dir)
    return lora.load(model, cfg, head, in_dir)


merge = base.no_merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
