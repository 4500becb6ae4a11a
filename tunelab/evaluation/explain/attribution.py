"""Token attributions: integrated gradients on the input embeddings (captum) and attention rollout.

Integrated gradients (Sundararajan et al., 2017) integrate the gradient of a scalar output f along the
straight line from a baseline input (every content token replaced by [PAD], special tokens kept) to the
real input, at the embedding layer. Completeness: the attributions sum to f(x) - f(baseline); we check
it and double the number of integration steps until the gap is within ``tolerance`` of |f(x) - f(baseline)|.

Attention rollout (Abnar & Zuidema, 2020) multiplies the head-averaged attention matrices of every layer,
each mixed half-and-half with the identity for the residual connection, to get how much each input
position flows into each output position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

GAP_FLOOR = 1e-3


@dataclass
class Attribution:
    scores: list[float]  # one per input position (summed over the embedding dimension)
    f_input: float  # f(x)
    f_baseline: float  # f(baseline)
    delta: float  # sum(scores) - (f(x) - f(baseline))
    steps: int  # integration steps used

    @property
    def relative_error(self) -> float:
        """|delta| / max(|f(x) - f(baseline)|, GAP_FLOOR): relative to the gap, absolute below a gap of 1e-3
        (a probability that barely moves cannot be integrated to a fixed relative precision, nor needs to be)."""
        return abs(self.delta) / max(abs(self.f_input - self.f_baseline), GAP_FLOOR)

    def completeness(self, tolerance: float = 0.05) -> dict:
        return {
            "sum": float(sum(self.scores)),
            "f_input": self.f_input,
            "f_baseline": self.f_baseline,
            "delta": self.delta,
            "relative_error": self.relative_error,
            "steps": self.steps,
            "ok": self.relative_error <= tolerance,
        }


def integrated_gradients(
    forward: Callable[..., torch.Tensor],
    embeddings: torch.nn.Module,
    input_ids: torch.Tensor,
    baseline_ids: torch.Tensor,
    extra: tuple = (),
    *,
    steps: int = 50,
    tolerance: float = 0.05,
    max_steps: int = 800,
    internal_batch_size: int = 64,
) -> Attribution:
    """IG of the scalar ``forward(input_ids, *extra)`` (shape (1,)) w.r.t. the output of ``embeddings``.

    Args:
        forward: maps (ids (1, seq), *extra) to the explained output, shape (1,).
        embeddings: the token-embedding module (its output is interpolated, positions stay as they are).
        input_ids, baseline_ids: (1, seq) token ids of the input and its baseline.
        steps: Gauss-Legendre points to start with; doubled until completeness holds or ``max_steps``.
    """
    from captum.attr import LayerIntegratedGradients

    lig = LayerIntegratedGradients(forward, embeddings)
    with torch.no_grad():
        f_x = float(forward(input_ids, *extra)[0])
        f_b = float(forward(baseline_ids, *extra)[0])
    while True:
        attr, delta = lig.attribute(
            input_ids,
            baselines=baseline_ids,
            additional_forward_args=extra,
            n_steps=steps,
            method="gausslegendre",
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
        scores = attr.sum(dim=-1)[0].detach().double()  # (seq,) from (1, seq, hidden)
        out = Attribution(scores.tolist(), f_x, f_b, float(delta[0]), steps)
        if out.relative_error <= tolerance or steps * 2 > max_steps:
            return out
        steps *= 2


def rollout(attentions: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Attention rollout from per-layer attentions, each (heads, seq, seq) (rows attend to columns).

    Returns (seq, seq): row i says how much each input position contributes to position i at the top.
    Every row sums to 1.
    """
    seq = attentions[0].shape[-1]
    eye = torch.eye(seq, dtype=torch.float64)
    out = eye
    for layer in attentions:
        a = layer.double().mean(dim=0)  # (seq, seq) averaged over heads
        a = residual * eye + (1 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        out = a @ out
    return out


def baseline_ids(input_ids: torch.Tensor, special_mask: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Every position that is not a special token replaced by ``pad_id``: (1, seq) like ``input_ids``."""
    return torch.where(special_mask.bool(), input_ids, torch.full_like(input_ids, pad_id))


def merge_words(text: str, offsets: list[tuple[int, int]], scores: list[float], special: list[int]) -> list[dict]:
    """Sum sub-word scores into words: pieces that touch (no character between them) form one word.

    Special tokens (and pieces with an empty span) are left out. Returns [{"word", "start", "end", "score"}].
    """
    words: list[dict] = []
    for (a, b), s, sp in zip(offsets, scores, special):
        if sp or a == b:
            continue
        if words and a == words[-1]["end"] and not text[a:b][:1].isspace():
            words[-1]["end"] = b
            words[-1]["score"] += s
        else:
            while a < b and text[a].isspace():  # BPE pieces carry their leading space
                a += 1
            words.append({"start": a, "end": b, "score": s})
    for w in words:
        w["word"] = text[w["start"] : w["end"]]
        w["score"] = float(w["score"])
    return [{"word": w["word"], "start": w["start"], "end": w["end"], "score": w["score"]} for w in words]
