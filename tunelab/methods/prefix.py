"""Prefix tuning (Li & Liang, 2021) through peft: trained key/value vectors are prepended in every attention layer.

Works with models whose attention takes ``past_key_values`` (BERT-style encoders and
Llama-style decoders in transformers 5); peft raises for others, reported as a ConfigError.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from tunelab.methods import base, lora
from tunelab.schema import Strict

MERGEABLE = False  # the prefix is extra attention input, not a weight delta
IDENTITY_AT_INIT = False  # random prefixes change attention from the start


class Config(Strict):
    name: Literal["prefix"] = "prefix"
    num_virtual_tokens: int = Field(20, ge=1, le=512, description="Prefix length (key/value vectors per layer).")
    projection: bool = Field(False, description="Reparameterise the prefix through a two-layer MLP (more stable, more parameters while training).")
    projection_hidden: int = Field(128, ge=1, description="Hidden size of that MLP.")


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import PrefixTuningConfig

    return base.prompt_wrap(model, PrefixTuningConfig, head, cfg.num_virtual_tokens,
                            prefix_projection=cfg.projection, encoder_hidden_size=cfg.projection_hidden)


save, load = lora.save, lora.load
