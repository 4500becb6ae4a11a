"""Per-row next-token choice for the continuous-batching scheduler: pure functions on one row's logits.

The order and the rules are transformers' (``RepetitionPenaltyLogitsProcessor`` -> temperature -> top-k -> top-p,
keeping at least one token), plus OpenAI's presence/frequency penalties, applied before the temperature as vLLM
does. Each row carries its own settings and its own random generator, so a request decodes the same whichever
requests share its batch. Written by hand because ``generate``'s processors take one setting for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """One request's decoding settings (what `tunelab generate` and the OpenAI fields give)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @property
    def plain_greedy(self) -> bool:
        """Argmax of the raw logits: no processor changes the choice."""
        return (
            not self.do_sample
            and self.repetition_penalty == 1.0
            and self.presence_penalty == 0.0
            and self.frequency_penalty == 0.0
        )


def penalize(logits: torch.Tensor, seen: torch.Tensor, counts: torch.Tensor | None, s: Sampling) -> torch.Tensor:
    """Repetition penalty over ``seen`` (prompt + generated ids, (k,)); presence/frequency over ``counts``
    ((vocab,) occurrences of each token in the generated text). logits: (vocab,); returns a new tensor."""
    out = logits.clone()
    if s.repetition_penalty != 1.0 and seen.numel():
        picked = out[seen]
        out[seen] = torch.where(picked < 0, picked * s.repetition_penalty, picked / s.repetition_penalty)
    if counts is not None and (s.presence_penalty or s.frequency_penalty):
        out -= s.frequency_penalty * counts + s.presence_penalty * (counts > 0).to(out.dtype)
    return out


def warp(logits: torch.Tensor, s: Sampling) -> torch.Tensor:
    """Temperature, top-k and top-p on (vocab,) logits; removed tokens get -inf."""
    out = logits / s.temperature
    if 0 < s.top_k < out.numel():
        kth = torch.topk(out, s.top_k).values[-1]
        out = out.masked_fill(out < kth, float("-inf"))
    if s.top_p < 1.0:
        ordered, order = torch.sort(out)  # ascending
        cum = ordered.softmax(-1).cumsum(-1)
        drop = cum <= 1 - s.top_p
        drop[-1] = False  # keep at least the most likely token
        out = out.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return out


def choose(logits: torch.Tensor, s: Sampling, generator: torch.Generator | None) -> int:
    """The next token from processed (vocab,) logits: argmax when greedy, else a draw from the warped softmax."""
    if not s.do_sample:
        return int(logits.argmax())
    probs = warp(logits.float(), s).softmax(-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def top_logprobs(logprobs: torch.Tensor, token: int, k: int) -> tuple[float, list[tuple[int, float]]]:
    """The chosen token's log-probability and the ``k`` most likely (token, log-probability) pairs; (vocab,) in."""
    chosen = float(logprobs[token])
    if k <= 0:
        return chosen, []
    values, ids = torch.topk(logprobs, k)
    return chosen, list(zip(ids.tolist(), values.tolist()))
