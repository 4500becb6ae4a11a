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
