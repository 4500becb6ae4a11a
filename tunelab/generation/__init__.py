"""Text generation on top of transformers' ``generate``: batched prompts or chats, stop strings,
a sliding context window and a token streamer. ``serve`` builds on ``generate`` and ``stream``."""

from tunelab.generation.config import GenerationConfig
from tunelab.generation.generate import Output, generate, stream

__all__ = ["GenerationConfig", "Output", "generate", "stream"]
