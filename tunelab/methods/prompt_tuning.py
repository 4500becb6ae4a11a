"""Prompt tuning (Lester et al., 2021) through peft: trained embeddings of virtual tokens prepended to the input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods import base, lora
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = False  # virtual tokens are extra input, not a weight delta
IDENTITY_AT_INIT = False


class Config(Strict):
    name: Literal["prompt-tuning"] = "prompt-tuning"
    num_virtual_tokens: int = Field(20, ge=1, le=512, description="Virtual tokens prepended to the input.")
    init_text: str | None = Field(
        None,
        description="Initialise the virtual tokens from the embeddings of this text (repeated to length); null = random.",
    )


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import PromptTuningConfig

    kwargs: dict = {"prompt_tuning_init": "RANDOM"}
    if cfg.init_text is not None:
        if not cfg.init_text.strip():
            raise ConfigError("method.init_text: empty text; give words to initialise from, or null for random")
        tok_dir = Path(getattr(model, "name_or_path", "") or "")
        if not (tok_dir / "tokenizer_config.json").is_file():
            raise ConfigError(f"method.init_text: needs the model's tokenizer beside its weights; {tok_dir} has none")
        kwargs = {
            "prompt_tuning_init": "TEXT",
            "prompt_tuning_init_text": cfg.init_text,
            "tokenizer_name_or_path": str(tok_dir),
        }
    return base.prompt_wrap(model, PromptTuningConfig, head, cfg.num_virtual_tokens, **kwargs)


save, load, merge = lora.save, lora.load, base.no_merge
param_groups, callbacks = base.default_param_groups, base.no_callbacks
