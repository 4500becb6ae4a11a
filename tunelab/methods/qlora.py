"""QLoRA-style LoRA (Dettmers et al., 2023): the frozen base's linear layers held quantized, LoRA trained on top.

``base: int8`` (CPU or GPU): int8 weight-only, one scale per output channel (torchao); the base's linear weights
take a quarter of their fp32 memory and every forward dequantizes them. ``base: nf4`` (CUDA only): 4-bit
NormalFloat with bf16 compute through bitsandbytes, as in the QLoRA paper. The adapters (peft LoRA, which wraps
torchao and bitsandbytes layers itself) and the task head stay fp32 and are all that is saved; loading
re-quantizes the base the same deterministic way. Merging folds the adapters into the dequantized base, i.e.
exactly the weights the adapters were trained against, and gives a plain fp32 model.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods import base, lora

if TYPE_CHECKING:  # torch is imported inside the functions, so method configs load without it
    import torch

MERGEABLE = True
IDENTITY_AT_INIT = False  # the quantized base already differs from the fp32 base by its rounding


class Config(lora.Config):
    name: Literal["qlora"] = "qlora"  # type: ignore[assignment]
    base: Literal["int8", "nf4"] = Field(
        "int8",
        description="How the frozen base's linear layers are stored: int8 (weight-only, "
        "torchao; CPU or GPU) or nf4 (4-bit NormalFloat, bitsandbytes; CUDA only).",
    )


def base_linears(model: torch.nn.Module, head: list[str]) -> list[str]:
    """The frozen linear layers to quantize: every nn.Linear of the transformer stack (never the head or LM head)."""
    from tunelab.compress.quantize import target_linears

    return [n for n in target_linears(model) if not any(n == h or n.startswith(h + ".") for h in head)]


def quantize_base(model: torch.nn.Module, cfg: Config, head: list[str]) -> int:
    """Quantize the base's linear layers in place; returns how many."""
    names = base_linears(model, head)
    if cfg.base == "int8":
        from tunelab.compress.quantize import quantize_linears

        quantize_linears(model, "int8-weight-only", names)
    else:
        _to_nf4(model, names)
    return len(names)


def _to_nf4(model: torch.nn.Module, names: list[str]) -> None:
    """Replace linears with bitsandbytes 4-bit NF4 layers (quantized when the loop moves the model to the GPU)."""
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "method.base: nf4 needs a CUDA GPU (bitsandbytes 4-bit kernels); on a CPU use method.base=int8"
        )
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise ConfigError("method.base: nf4 needs bitsandbytes: pip install 'tunelab[cuda]'") from None
    # the 4-bit matmuls compute in bf16 only where this GPU supports it (Ampere and later), else in fp16
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    for name in names:
        old = model.get_submodule(name)
        new = bnb.nn.Linear4bit(
            old.in_features, old.out_features, bias=old.bias is not None, compute_dtype=compute, quant_type="nf4"
        )
        new.weight = bnb.nn.Params4bit(old.weight.data.clone(), requires_grad=False, quant_type="nf4")
        if old.bias is not None:
            new.bias = torch.nn.Parameter(old.bias.data.clone(), requires_grad=False)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new.cuda())


@contextlib.contextmanager
def _no_requantize_warning():
    """peft warns that its own merge of torchao layers is unavailable; ``merge`` below does not use it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*get_apply_tensor_subclass.*", category=UserWarning)
        yield


def apply(model: torch.nn.Module, cfg: Config, head: list[str]) -> torch.nn.Module:
    quantize_base(model, cfg, head)
    with _no_requantize_warning():
        return lora.apply(model, cfg, head)


def save(model, out_dir: Path) -> None:
    base.peft_save(model, out_dir)


def load(model: torch.nn.Module, cfg: Config, head: list[str], in_dir: Path) -> torch.nn.Module:
    quantize_base(model, cfg, head)
    with _no_requantize_warning():
        return base.peft_load(model, in_dir)


def _dense_weight(module: torch.nn.Module) -> torch.Tensor | None:
    """The fp32 weight a quantized linear layer computes with (None for a plain layer)."""
    import sys

    import torch

    bnb = sys.modules.get("bitsandbytes")  # only a model quantized to nf4 has imported it
    if bnb is not None and isinstance(module, bnb.nn.Linear4bit):
        return bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state).float()
    if isinstance(module, torch.nn.Linear) and type(module.weight.data) is not torch.Tensor:
        return module.weight.dequantize().float()  # a torchao quantized tensor
    return None


def _plain_linear(module: torch.nn.Module, weight: torch.Tensor) -> torch.nn.Linear:
    import torch

    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None, device=weight.device)
    new.weight.data.copy_(weight)
    if module.bias is not None:
        new.bias.data.copy_(module.bias.detach().float())
    return new.requires_grad_(False)


def merge(model) -> torch.nn.Module:
    """Fold the adapters into the dequantized base: a plain fp32 model with the outputs of the trained one.

    peft's own merge for quantized layers re-quantizes the merged weight (lossy); this keeps it in fp32.
    """
    import torch

    with torch.no_grad():
        return _merge(model)


def _merge(model) -> torch.nn.Module:
    from peft.tuners.lora import LoraLayer

    for module in [m for m in model.modules() if isinstance(m, LoraLayer)]:
        base_layer = module.get_base_layer()
        dense = _dense_weight(base_layer)
        if dense is None:
            dense = base_layer.weight.detach().float()
        for name in module.active_adapters:
            dense = dense + module.get_delta_weight(name).float()
        module.base_layer = _plain_linear(base_layer, dense)
    for name, module in list(model.named_modules()):  # quantized layers the adapters did not wrap
        dense = _dense_weight(module)
        if dense is not None:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, _plain_linear(module, dense))
    return model.unload()


param_groups, callbacks = base.default_param_groups, base.no_callbacks
