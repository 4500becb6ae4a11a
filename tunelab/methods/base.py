"""Helpers shared by the method files: freezing, counting, saving only what trained, and the defaults for
the protocol members a method does not specialise (``param_groups``, ``callbacks``, ``merge``).

torch is imported inside the functions, so method configs load without it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

TRAINABLE_FILE = "trainable.safetensors"


def freeze_all(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def unfreeze_modules(model: torch.nn.Module, names: list[str]) -> None:
    """Make every parameter under the named submodules trainable (e.g. the task head)."""
    for name in names:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(True)


def unfreeze_matching(model: torch.nn.Module, patterns: list[str]) -> int:
    """Train parameters whose name matches any regex; returns how many matched."""
    compiled = [re.compile(p) for p in patterns]
    count = 0
    for name, p in model.named_parameters():
        if any(c.search(name) for c in compiled):
            p.requires_grad_(True)
            count += 1
    return count


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared tensors counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def find_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The transformer block stack: the longest ModuleList in the model (BERT's encoder.layer, Llama's layers, GPT-2's h)."""
    import torch

    best: tuple[str, torch.nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            if best is None or len(module) > len(best[1]):
                best = (name, module)
    if best is None:
        raise ModelError(f"{type(model).__name__}: no stack of transformer layers found")
    return best


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters that train: what a checkpoint of a parameter-efficient run needs."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_trainable(model: torch.nn.Module, out_dir: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.cpu() for k, v in trainable_state(model).items()}, str(Path(out_dir) / TRAINABLE_FILE))


def load_trainable(model: torch.nn.Module, in_dir: Path) -> torch.nn.Module:
    """Load tensors saved by ``save_trainable`` into a model built the same way."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(Path(in_dir) / TRAINABLE_FILE))
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ModelError(f"{in_dir}: saved weights do not fit the model (unknown tensors: {sorted(missing)[:3]})")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in state.items():
            params[name].copy_(tensor)
    return model


# ---------------------------------------------------------------- peft-backed methods


def peft_task_type(model: torch.nn.Module) -> str:
    """peft's TaskType for a transformers model, from its class name (prompt methods need it to wrap the forward)."""
    cls = type(model).__name__
    for suffix, task in (
        ("ForSequenceClassification", "SEQ_CLS"),
        ("ForTokenClassification", "TOKEN_CLS"),
        ("ForCausalLM", "CAUSAL_LM"),
        ("ForSeq2SeqLM", "SEQ_2_SEQ_LM"),
        ("ForQuestionAnswering", "QUESTION_ANS"),
    ):
        if cls.endswith(suffix):
            return task
    return "FEATURE_EXTRACTION"


def peft_wrap(model: torch.nn.Module, peft_config) -> torch.nn.Module:
    """get_peft_model, with peft's ValueErrors (unsupported layer or architecture) turned into ConfigErrors."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, peft_config)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise ConfigError(
            f"method: peft cannot apply {type(peft_config).__name__} to {type(model).__name__} ({exc})"
        ) from None


def peft_save(model, out_dir: Path) -> None:
    """PEFT's own format (adapter_config.json + adapter_model.safetensors), loadable by PeftModel.from_pretrained."""
    model.save_pretrained(str(out_dir))


def peft_load(model: torch.nn.Module, in_dir: Path) -> torch.nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(in_dir))


def prompt_wrap(
    model: torch.nn.Module, peft_config_cls, head: list[str], num_virtual_tokens: int, **kwargs
) -> torch.nn.Module:
    """Wrap ``model`` with a peft prompt-learning method; the task head trains alongside the prompt."""
    task = peft_task_type(model)
    if task not in ("SEQ_CLS", "CAUSAL_LM", "TOKEN_CLS"):
        raise ConfigError(f"method: prompt methods need a classifier or causal LM, not {type(model).__name__}")
    peft_config = peft_config_cls(task_type=task, num_virtual_tokens=num_virtual_tokens, **kwargs)
    if head and hasattr(peft_config, "modules_to_save"):
        peft_config.modules_to_save = list(
            head
        )  # peft adds classifier/score itself for SEQ_CLS; a new pooler needs naming
    return peft_wrap(model, peft_config)


# ---------------------------------------------------------------- protocol defaults


def default_param_groups(model: torch.nn.Module, lr: float, weight_decay: float, cfg) -> list[dict]:
    """The usual optimizer groups (matrices decay, biases and norms do not); ``cfg`` is unused."""
    from tunelab.training.optim import param_groups

    return param_groups(model, lr, weight_decay)


def no_callbacks(model: torch.nn.Module, cfg) -> list:
    """No loop callbacks."""
    return []


def no_merge(model: torch.nn.Module) -> torch.nn.Module:
    """For methods whose ``MERGEABLE`` is False: merging is refused (the recipe checks MERGEABLE first)."""
    raise ConfigError(f"{type(model).__name__}: this method cannot be folded into the base weights")
