"""Speed levers the recipe applies around the one training loop (all switchable in the ``speed:`` section).

bf16 frozen weights (PEFT methods under bf16 autocast), per-layer torch.compile, gradient
checkpointing, and per-document attention for packed rows (decoder LMs; see models/attention.py). Each is measured in bench/results/amx/levers.md; the defaults are the ones that paid off there.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.schema import Strict

if TYPE_CHECKING:
    import torch


class Config(Strict):
    """The ``speed:`` config section."""

    bf16_frozen_weights: bool = Field(
        True,
        description="With train.precision=bf16: keep frozen linear weights in bf16 during training (PEFT methods; "
        "autocast would cast them every step anyway). Embeddings, norms, biases and trained weights stay fp32.",
    )
    ce_chunk: int = Field(
        1024,
        ge=0,
        description="Causal LM: project to the vocabulary and take the cross-entropy for this many target tokens at a time, "
        "only at target positions (never all logits at once); 0 = plain full-logits loss.",
    )
    compile: bool = Field(
        False,
        description="torch.compile each transformer layer; measured 0.39x on a few-minute run including compile time on an AMX machine (bench/results/amx/levers.md), so off by default.",
    )
    pad_multiple: int = Field(
        0,
        ge=0,
        le=4096,
        description="Pad each batch's sequence length up to a multiple of this (bucketed lengths: with speed.compile, "
        "each bucket compiles once with static shapes); 0 = pad to the longest row only.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute layer activations in the backward pass: less memory (measured -770 MB on smollm2-135m LoRA), 0.68x speed.",
    )
    cache: bool = Field(
        True,
        description="Cache encoded datasets on disk ($TUNELAB_CACHE or ~/.cache/tunelab), keyed by data content, tokenizer and encode options.",
    )


def frozen_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """Linear layers whose weight is frozen, fp32 and not shared with an embedding (tied LM heads stay fp32)."""
    import torch

    embedded = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
        and not m.weight.requires_grad
        and m.weight.dtype == torch.float32
        and id(m.weight) not in embedded
        and type(m.weight.data) is torch.Tensor
    ]  # not a quantized base (QLoRA): those keep their own storage


@contextlib.contextmanager
def bf16_frozen(model: torch.nn.Module, enabled: bool = True) -> Iterator[int]:
    """Store frozen linear weights in bf16 inside the block (yields how many); fp32 again on exit.

    Under bf16 autocast a linear layer computes in bf16 whatever its weight's dtype, so the forward and
    backward are unchanged; what changes is that the fp32->bf16 cast happens once instead of every step,
    and the frozen weights take half the memory. On exit the weights are the bf16-rounded values in fp32,
    which is what every autocast matmul saw during training.
    """
    import torch

    layers = frozen_linears(model) if enabled else []
    for m in layers:
        m.weight.data = m.weight.data.to(torch.bfloat16)
    try:
        yield len(layers)
    finally:
        for m in layers:
            m.weight.data = m.weight.data.to(torch.float32)


def compile_layers(model: torch.nn.Module, dynamic: bool = True) -> int:
    """torch.compile every transformer layer in place (parameter names unchanged); returns how many.

    The layers share one forward, so a shape compiles once for all of them; ``dynamic=False`` (with bucketed
    lengths) compiles one static graph per bucket instead of one symbolic graph.
    """
    from tunelab.methods.base import find_layers

    _, layers = find_layers(model)
    for layer in layers:
        layer.compile(dynamic=dynamic)
    return len(layers)


def bucketed(collate: Callable[[list[dict]], dict], multiple: int) -> Callable[[list[dict]], dict]:
    """``collate`` whose (batch, length) tensors are right-padded so length is a multiple of ``multiple``.

    Padding never enters the loss or attention: input ids pad with 0 under a 0 attention mask (or, in packed rows,
    as position-0 single-token documents), labels with -100, masks and positions with 0. Values that are not tensors
    (a multi-task batch's member name) pass through.
    """
    if multiple <= 1:
        return collate

    def pad(features: list[dict]) -> dict:
        import torch

        batch = collate(features)
        length = batch["input_ids"].shape[1]
        extra = -length % multiple
        if not extra:
            return batch
        return {
            k: torch.nn.functional.pad(v, (0, extra), value=-100 if k == "labels" else 0)
            if isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[1] == length
            else v
            for k, v in batch.items()
        }

    return pad


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Activation checkpointing through transformers (non-reentrant: works with frozen embeddings)."""
    if not getattr(model, "supports_gradient_checkpointing", False) and not hasattr(
        model, "gradient_checkpointing_enable"
    ):
        raise ConfigError(
            f"speed.gradient_checkpointing: {type(model).__name__} does not support gradient checkpointing"
        )
    if hasattr(model, "activation_checkpointing_enable"):  # the newer transformers 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


@contextlib.contextmanager
def applied(model: torch.nn.Module, cfg: Config, precision: str, trains_everything: bool, log) -> Iterator[None]:
    """Apply the configured levers for the duration of training (the recipe wraps ``loop.train`` in this)."""
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
    if cfg.compile:
        log(f"speed: compiling {compile_layers(model, dynamic=cfg.pad_multiple == 0)} layers")
    from tunelab.models.attention import packed_documents

    with (
        bf16_frozen(model, cfg.bf16_frozen_weights and precision == "bf16" and not trains_everything) as n,
        packed_documents(model),
    ):
        if n:
            log(f"speed: {n} frozen linear weights held in bf16 during training")
        yield
