"""P-tuning (Liu et al., 2021) through peft: virtual token embeddings produced by a small trained prompt encoder (MLP or LSTM)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.methods import base, lora
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = False  # virtual tokens are extra input, not a weight delta
IDENTITY_AT_INIT = False


class Config(Strict):
    name: Literal["p-tuning"] = "p-tuning"
    num_virtual_tokens: int = Field(20, ge=1, le=512, description="Virtual tokens prepended to the input.")
    encoder: Literal["MLP", "LSTM"] = Field(
        "MLP", description="Prompt encoder that produces the virtual token embeddings."
    )
    encoder_hidden: int = Field(128, ge=1, description="Hidden size of the prompt encoder.")


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import PromptEncoderConfig

    return base.prompt_wrap(
        model,
        PromptEncoderConfig,
        head,
        cfg.num_virtual_tokens,
        encoder_reparameterization_type=cfg.encoder,
        encoder_hidden_size=cfg.encoder_hidden,
    )


save, load, merge = lora.save, lora.load, base.no_merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
