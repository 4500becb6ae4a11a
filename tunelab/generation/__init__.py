"""Text generation on top of transformers' ``generate``: batched prompts or chats, stop strings,
a sliding context window and a token streamer. ``serve`` builds on ``generate`` and ``stream``.

The names below are loaded on first use (PEP 562), so importing a submodule such as
``tunelab.generation.config`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["GenerationConfig", "Output", "generate", "stream"]

if TYPE_CHECKING:
    from tunelab.generation.config import GenerationConfig
    from tunelab.generation.decode import Output, generate, stream


def __getattr__(name: str):
    if name == "GenerationConfig":
        from tunelab.generation.config import GenerationConfig

        return GenerationConfig
    if name in ("Output", "generate", "stream"):
        from tunelab.generation import decode

        return vars(decode)[name]
    raise AttributeError(f"module 'tunelab.generation' has no attribute {name!r}")
