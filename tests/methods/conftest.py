"""A tiny Llama causal LM for the method contract suite (named *_contract to stay clear of other branches' fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_llama_contract(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 Llama (random weights, no biases) with a word-level tokenizer, saved as a HF directory."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import _word_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = _word_tokenizer(folder)
    cfg = LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder
