"""The torch modules of the bottleneck adapter method (methods/adapter.py), kept apart so that method
configs load without importing torch."""

from __future__ import annotations

import torch

ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU, "tanh": torch.nn.Tanh}


class Bottleneck(torch.nn.Module):
    def __init__(self, dim: int, reduction_factor: int, activation: str):
        super().__init__()
        width = max(1, dim // reduction_factor)
        self.down = torch.nn.Linear(dim, width)
        self.act = ACTIVATIONS[activation]()
        self.up = torch.nn.Linear(width, dim)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (..., dim) -> (..., dim)
        return h + self.up(self.act(self.down(h)))


class AdaptedLayer(torch.nn.Module):
    """A base layer followed by a bottleneck adapter on its output."""

    def __init__(self, base_layer: torch.nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        return self.adapter(self.base_layer(*args, **kwargs))
