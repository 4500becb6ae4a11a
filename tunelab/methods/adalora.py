"""AdaLoRA (Zhang et al., 2023) through peft: SVD-shaped LoRA whose rank budget is pruned during training.

The budget schedule needs the loop's step count: ``callbacks`` returns a loop Callback
that sets peft's total_step/tinit/tfinal from the real number of steps and calls
``update_and_allocate`` after each optimizer step, before the gradients are cleared.
The callback's ``state_dict`` holds peft's importance averages and the rank pattern, so a resumed run
continues the pruning schedule exactly. Not covered: peft adds AdaLoRA's orthogonality penalty only to
a loss computed by the model itself (labels passed in); tunelab's tasks compute the loss, so it is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods import base, lora
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch

MERGEABLE = True
IDENTITY_AT_INIT = True  # the singular values E start at zero


class Config(Strict):
    name: Literal["adalora"] = "adalora"
    init_r: int = Field(12, ge=1, le=4096, description="Starting rank of every adapted layer.")
    target_r: int = Field(4, ge=1, le=4096, description="Average rank left after pruning (the final budget).")
    alpha: float = Field(16.0, gt=0, description="Scaling numerator of the update.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Linear layers to adapt, by name suffix or all-linear (never the task head)."
    )
    warmup_fraction: float = Field(
        0.1, ge=0, lt=1, description="Fraction of steps trained at the full rank before pruning starts (tinit)."
    )
    final_fraction: float = Field(
        0.2, ge=0, lt=1, description="Fraction of steps at the end trained with the final ranks fixed (tfinal)."
    )
    delta_t: int = Field(1, ge=1, description="Reallocate ranks every N steps during the pruning phase.")


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    from peft import AdaLoraConfig

    if cfg.target_r > cfg.init_r:
        raise ConfigError(f"method.target_r: {cfg.target_r} must not exceed method.init_r ({cfg.init_r})")
    if cfg.warmup_fraction + cfg.final_fraction >= 1:
        raise ConfigError("method.warmup_fraction + method.final_fraction must be < 1 (no steps left to prune ranks)")
    # total_step is a placeholder until the loop knows the real step count (see RankBudget)
    peft_cfg = AdaLoraConfig(
        init_r=cfg.init_r,
        target_r=cfg.target_r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        deltaT=cfg.delta_t,
        target_modules=lora.resolve_targets(model, cfg.target_modules, head),
        modules_to_save=list(head) or None,
        total_step=1000,
        tinit=0,
        tfinal=0,
    )
    return base.peft_wrap(model, peft_cfg)


def callbacks(model, cfg: Config) -> list:
    """The loop Callback that drives the rank-budget schedule (and saves its importance averages)."""
    from tunelab.methods.adalora_budget import RankBudget

    return [RankBudget(model, cfg.warmup_fraction, cfg.final_fraction)]


def ranks(model) -> dict[str, int]:
    """Ranks still allocated per adapted layer (peft's rank_pattern masks; init_r everywhere before the first allocation)."""
    peft_cfg = model.peft_config[model.active_adapter]
    if peft_cfg.rank_pattern:
        return {name: int(sum(mask)) for name, mask in peft_cfg.rank_pattern.items()}
    return {
        name: peft_cfg.init_r
        for name, m in model.named_modules()
        if hasattr(m, "lora_E") and model.active_adapter in m.lora_E
    }


save, load, merge = lora.save, lora.load, lora.merge
param_groups = base.default_param_groups
