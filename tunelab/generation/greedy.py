"""Greedy decoding on a KV cache with one forward per token and nothing else per step.

transformers' ``generate`` is the general tool (sampling, beams, penalties, stop strings, streaming) and
``generate.py`` uses it for those. Plain greedy decoding needs much less per token: the forward on the new
token, an argmax, and an EOS check. This loop does only that, on transformers' dynamic KV cache (a static,
preallocated cache measured no faster here: bench/results/<cpu-kind>/decode.md), and can run the decode step
through ``torch.compile`` on a static cache (measured slower, so only the benchmark uses it). It produces exactly the
tokens ``generate(do_sample=False, num_beams=1)`` does (tests/generation/test_greedy.py checks it).
Written by hand because transformers has no lighter greedy loop; the model forward and the caches are
transformers' own.
"""

from __future__ import annotations

from typing import Callable

import torch

# generation_config.json fields that make generate() change the logits or the length: their presence sends decoding to generate()
LOGITS_FIELDS = (
    "min_length",
    "min_new_tokens",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "sequence_bias",
    "exponential_decay_length_penalty",
    "encoder_repetition_penalty",
    "renormalize_logits",
    "guidance_scale",
    "watermarking_config",
    "prompt_lookup_num_tokens",
    "max_time",
)


def supports(model, cfg) -> bool:
    """Whether this loop decodes exactly as ``generate`` would for ``cfg``: greedy, one beam, no penalties or stop
    strings, a decoder-only model without prompt-learning virtual tokens, and no logits-changing generation_config."""
    plain = (
        not cfg.do_sample
        and cfg.num_beams == 1
        and cfg.repetition_penalty == 1.0
        and cfg.no_repeat_ngram_size == 0
        and not cfg.stop
    )
    config = getattr(model, "config", None)
    peft_cfg = getattr(model, "active_peft_config", None)
    prompt_learning = peft_cfg is not None and getattr(peft_cfg, "is_prompt_learning", False)
    gen = getattr(model, "generation_config", None)
    extras = [
        f for f in LOGITS_FIELDS if gen is not None and getattr(gen, f, None) not in (None, 0, 1.0, False, [], {})
    ]
    return (
        plain
        and not prompt_learning
        and not extras
        and config is not None
        and not getattr(config, "is_encoder_decoder", False)
    )


def new_cache(model, batch: int, max_len: int, static: bool):
    """A transformers KV cache for ``batch`` rows of up to ``max_len`` tokens (static: preallocated)."""
    from transformers import DynamicCache, StaticCache

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if static:
        return StaticCache(config=inner.config, max_cache_len=max_len)
    return DynamicCache(config=inner.config)


@torch.no_grad()
def greedy(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
    *,
    static_cache: bool = False,
    step: Callable | None = None,
    on_token: Callable[[torch.Tensor], bool] | None = None,
) -> torch.Tensor:
    """Greedy continuation of left-padded prompts.

    input_ids, attention_mask: (batch, prompt_len), left-padded. Returns (batch, steps) new token ids; a row that
    has produced an EOS id continues with ``pad_id`` (as ``generate`` does) and decoding stops when every row has.
    ``step(model, ids, mask, position_ids, cache_kw, cache_position)`` replaces the plain decode forward (a compiled one);
    ``on_token(tokens)`` sees each step's (batch,) tokens and may return True to stop early.
    """
    batch, prompt_len = input_ids.shape
    device = input_ids.device
    total = prompt_len + max_new_tokens
    cache = new_cache(model, batch, total, static_cache)
    # full-length mask: the prompt's padding stays masked; later positions are masked by causality until written
    mask = torch.cat([attention_mask, attention_mask.new_ones(batch, max_new_tokens)], dim=1)  # (batch, total)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(
        0
    )  # left padding: each row counts from its first token
    cache_kw = cache_kwarg(model, cache)
    out = model(
        input_ids=input_ids,
        attention_mask=mask if static_cache else attention_mask,
        position_ids=positions,
        use_cache=True,
        cache_position=torch.arange(prompt_len, device=device),
        logits_to_keep=1,
        **cache_kw,
    )
    step = step or forward_step
    eos = torch.tensor(eos_ids, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    pos = positions[:, -1:] + 1  # (batch, 1)
    logits = out.logits[:, -1]  # (batch, vocab)
    for i in range(max_new_tokens):
        nxt = torch.where(done, torch.full_like(done, pad_id, dtype=torch.long), logits.argmax(-1))  # (batch,)
        tokens[:, i] = nxt
        done |= torch.isin(nxt, eos)
        stop = on_token(nxt) if on_token is not None else False
        if i == max_new_tokens - 1 or stop or bool(done.all()):
            return tokens[:, : i + 1]
        cache_position = torch.tensor([prompt_len + i], device=device)
        step_mask = mask if static_cache else mask[:, : prompt_len + i + 1]
        logits = step(model, nxt[:, None], step_mask, pos, cache_kw, cache_position)[:, -1]
        pos = pos + 1
    return tokens


def forward_step(model, ids, mask, position_ids, cache_kw: dict, cache_position) -> torch.Tensor:
    """One decode forward: logits (batch, 1, vocab) for the new tokens ``ids`` (batch, 1)."""
    return model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=position_ids,
        use_cache=True,
        cache_position=cache_position,
        **cache_kw,
    ).logits


def cache_kwarg(model, cache) -> dict:
    """The cache argument under the name this transformers version uses (``cache`` from 5.2x, ``past_key_values`` before)."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"cache": cache} if "cache" in inspect.signature(inner.forward).parameters else {"past_key_values": cache}


def compiled_step() -> Callable:
    """``forward_step`` through torch.compile (static shapes: one graph per batch size and cache length)."""
    return torch.compile(forward_step, dynamic=False)
