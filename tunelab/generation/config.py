"""The ``generation:`` config section (defined in tunelab/generation_config.py so config loading needs no torch)."""

from tunelab.generation_config import GenerationConfig

__all__ = ["GenerationConfig"]
