"""Optimizer and learning-rate schedule."""

from __future__ import annotations

import torch


def param_groups(model: torch.nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: matrices decay, biases and norm weights (1-D) do not."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr": lr})
    return [g for g in groups if g["params"]]


def adamw(groups: list[dict], lr: float) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel for all tensors) when every parameter is a float tensor on CPU/CUDA."""
    params = [p for g in groups for p in g["params"]]
    fused = all(p.dtype in (torch.float32, torch.bfloat16) and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, fused=fused)


def lr_lambda(schedule: str, warmup: int, total: int):
    """Multiplier of the peak lr at each step: linear warmup, then linear/cosine decay to 0 or constant."""
    import math

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return f


def scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup: int, total: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule, warmup, total))


def layer_depths(model: torch.nn.Module) -> tuple[dict[str, int], int]:
    """Depth of every parameter: 0 embeddings (and prompt embeddings), 1..L the transformer layers, L+1 the rest (head, final norm, pooler).

    Returns (name -> depth, L). Works on plain and peft-wrapped models (the layer stack is found by shape, not by name).
    """
    from tunelab.methods.base import find_layers

    prefix, layers = find_layers(model)
    n = len(layers)
    depths = {}
    for name, _ in model.named_parameters():
        if name.startswith(prefix + "."):
            depths[name] = int(name[len(prefix) + 1 :].split(".", 1)[0]) + 1
        else:
            depths[name] = 0 if "embed" in name else n + 1
    return depths, n


def layerwise_decay(model: torch.nn.Module, groups: list[dict], decay: float) -> list[dict]:
    """LLRD: split each group by layer depth and scale its lr by decay**(L+1-depth); the head keeps the peak lr."""
    depths, n = layer_depths(model)
    names = {id(p): name for name, p in model.named_parameters()}
    out = []
    for group in groups:
        by_depth: dict[int, list] = {}
        for p in group["params"]:
            by_depth.setdefault(depths[names[id(p)]], []).append(p)
        for depth, params in sorted(by_depth.items()):
            out.append({**group, "params": params, "lr": group["lr"] * decay ** (n + 1 - depth)})
    return out


def groups_builder(method_groups=None, method_cfg=None, llrd: float | None = None):
    """The loop's ``param_groups(model, lr, weight_decay)``: the method's own groups if it has them, then LLRD if asked."""

    def build(model: torch.nn.Module, lr: float, weight_decay: float) -> list[dict]:
        groups = (
            method_groups(model, lr, weight_decay, method_cfg)
            if method_groups
            else param_groups(model, lr, weight_decay)
        )
        return layerwise_decay(model, groups, llrd) if llrd else groups

    return build


def with_modules(build, modules: list):
    """``build``'s param groups plus the trainable parameters of ``modules`` (trained alongside the model, not part of
    it: a distillation projection...), in one more group at the peak lr."""
    if not modules:
        return build

    def groups(model: torch.nn.Module, lr: float, weight_decay: float) -> list[dict]:
        extra = [p for m in modules for p in m.parameters() if p.requires_grad]
        return build(model, lr, weight_decay) + (
            [{"params": extra, "weight_decay": weight_decay, "lr": lr}] if extra else []
        )

    return groups
