"""Greedy-decoding parity between the source model and an exported one, with the evidence to explain differences.

Both sides decode exactly ``n`` tokens greedily (EOS does not stop them, so every prompt compares ``n`` tokens).
Where they first differ, the reference's margin between its top two logits at that step is recorded: a flip
where the margin is below the export's rounding noise (f16: ~1e-3 relative; q8_0 more) is a near-tie that
rounding decides, not a conversion bug; a large margin would be one.
"""

from __future__ import annotations

from typing import Callable

import torch


def prompt_ids(tokenizer, template: str | None, prompts: list) -> list[list[int]]:
    """Token ids of generation prompts (``Task.prompts``: message lists rendered with ``template``, or raw text)."""
    from tunelab.generation.decode import encode_prompt

    return [list(encode_prompt(tokenizer, p, 10**9, template, log=lambda _m: None)[0]) for p in prompts]


@torch.no_grad()
def greedy_torch(model, prompt_ids: list[int], n: int) -> tuple[list[int], list[float]]:
    """``n`` greedy tokens from a transformers causal LM, and the top-1 minus top-2 logit margin at each step."""
    ids = torch.tensor([prompt_ids])
    out = model(input_ids=ids, use_cache=True)
    tokens, margins = [], []
    for _ in range(n):
        logits = out.logits[0, -1].float()  # (vocab,)
        top = logits.topk(2)
        tokens.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        out = model(input_ids=torch.tensor([[tokens[-1]]]), cache=out.past_key_values, use_cache=True)
    return tokens, margins


def compare(reference: list[tuple[list[int], list[float]]], candidate: list[list[int]]) -> dict:
    """Prompts with identical tokens, and for the others where they diverge and the reference's margin there."""
    rows = []
    for (ref, margins), cand in zip(reference, candidate):
        first = next((i for i, (a, b) in enumerate(zip(ref, cand)) if a != b), None)
        if first is None and len(cand) < len(ref):
            first = len(cand)
        rows.append(
            {
                "equal": first is None,
                "first_difference": first,
                "reference_margin_at_difference": round(margins[first], 5)
                if first is not None and first < len(margins)
                else None,
                "matching_prefix": first if first is not None else len(ref),
            }
        )
    equal = sum(r["equal"] for r in rows)
    return {
        "prompts": len(rows),
        "identical": equal,
        "tokens_per_prompt": len(reference[0][0]) if reference else 0,
        "matching_tokens": sum(r["matching_prefix"] for r in rows),
        "per_prompt": rows,
    }


def tokens_per_second(generate: Callable[[list[int]], list[int]], prompts: list[list[int]]) -> float:
    """Generated tokens per second over the prompts, one at a time (prompt processing included)."""
    import time

    generate(prompts[0][:8])  # warm-up
    start, total = time.perf_counter(), 0
    for p in prompts:
        total += len(generate(p))
    return round(total / (time.perf_counter() - start), 2)
