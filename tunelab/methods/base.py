"""Helpers shared by the method files: freezing, counting, and saving only what trained."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tunelab.errors import ModelError

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
    save_file({k: v.cpu() for k, v in trainable_state(model).items()}, str(Path(out_dir) / TRAINABLE_FILE))


def load_trainable(model: torch.nn.Module, in_dir: Path) -> torch.nn.Module:
    """Load tensors saved by ``save_trainable`` into a model built the same way."""
    state = load_file(str(Path(in_dir) / TRAINABLE_FILE))
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ModelError(f"{in_dir}: saved weights do not fit the model (unknown tensors: {sorted(missing)[:3]})")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, tensor in state.items():
            params[name].copy_(tensor)
    return model
