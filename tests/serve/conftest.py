"""Fixtures for the server tests: served tiny models."""

from __future__ import annotations

import pytest

from tunelab.serve import registry


@pytest.fixture(scope="module")
def tiny_served(tiny_llama_dir):
    """The tiny random Llama (SmolLM2's tokenizer and chat template) served as model 'tiny'."""
    return registry.load_all([f"tiny={tiny_llama_dir}"], log=lambda m: None)
