"""Distillation losses: pure functions of tensors (teacher targets, student scores) -> summed per-item losses.

Teacher targets are stored as the teacher's top-k logits per item (``values`` and ``indices``, (items, k)); a task
with k >= its number of classes stores them all, so the divergence is exact. With fewer than all classes (a causal
LM's vocabulary), both distributions are taken over the teacher's top-k support and renormalised there: the student's
logits are needed only at those k indices, which ``gathered_logits`` computes chunk by chunk from the final hidden
states and the LM head's weight, so no (items, vocab) block of the student ever exists (nor of the teacher: its
cache is made the same way).

Divergences between teacher p and student q, both softened by the temperature T (softmax(logits / T)), per item:
  * forward_kl: KL(p || q) = sum p (log p - log q)   (Hinton et al.; mean-seeking)
  * reverse_kl: KL(q || p) = sum q (log q - log p)   (mode-seeking; MiniLLM)
  * jsd: generalized Jensen-Shannon with beta (GKD, Agarwal et al.): m = beta p + (1 - beta) q,
    JSD_beta = beta KL(p || m) + (1 - beta) KL(q || m); beta = 0.5 is the symmetric JSD.
The distillation loss sums alpha * CE(labels) + (1 - alpha) * T^2 * divergence over items (T^2 keeps the gradient
scale of the soft term independent of T, as in Hinton et al.).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def divergence(student: torch.Tensor, teacher: torch.Tensor, kind: str, temperature: float, beta: float = 0.5):
    """Per-item divergence (items,) between teacher and student logits over the same support, (items, k) each."""
    log_q = F.log_softmax(student.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher.float() / temperature, dim=-1)
    if kind == "forward_kl":
        return (log_p.exp() * (log_p - log_q)).sum(-1)
    if kind == "reverse_kl":
        return (log_q.exp() * (log_q - log_p)).sum(-1)
    if kind == "jsd":
        if not 0.0 < beta < 1.0:
            raise ValueError(f"jsd: beta must be in (0, 1), got {beta}")
        # log m = logsumexp(log p + log beta, log q + log(1 - beta)), in log space for stability
        log_m = torch.logsumexp(
            torch.stack([log_p + torch.log(torch.tensor(beta)), log_q + torch.log1p(torch.tensor(-beta))]), dim=0
        )
        kl_p = (log_p.exp() * (log_p - log_m)).sum(-1)
        kl_q = (log_q.exp() * (log_q - log_m)).sum(-1)
        return beta * kl_p + (1.0 - beta) * kl_q
    raise ValueError(f"unknown divergence '{kind}'; choose one of: {', '.join(DIVERGENCES)}")


def top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the k largest logits per item; every class (in class order) when k >= classes."""
    if k >= logits.shape[-1]:
        idx = torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
        return logits, idx
    return torch.topk(logits, k, dim=-1)


def top_k_linear(hidden: torch.Tensor, weight: torch.Tensor, k: int, chunk: int = 256):
    """``top_k(hidden @ weight.T, k)`` computed ``chunk`` rows at a time (no grad): hidden (n, d), weight (V, d)."""
    values, indices = [], []
    with torch.no_grad():
        for s in range(0, hidden.shape[0], chunk):
            logits = (hidden[s : s + chunk] @ weight.T).float()  # (chunk, V)
            v, i = top_k(logits, k)
            values.append(v)
            indices.append(i)
    if not values:
        return hidden.new_zeros(0, min(k, weight.shape[0])).float(), torch.zeros(
            0, min(k, weight.shape[0]), dtype=torch.long
        )
    return torch.cat(values), torch.cat(indices)


@dataclass(frozen=True)
class Soft:
    """How the soft term is computed: the divergence, the temperature T and JSD's beta."""

    kind: str = "forward_kl"
    temperature: float = 2.0
    beta: float = 0.5


def gathered_logits(scores, indices: torch.Tensor) -> torch.Tensor:
    """The student's logits at the teacher's indices, (items, k), for plain logits (items, classes)."""
    return scores.logits.float().gather(1, indices)


def distill_sum(scores, values: torch.Tensor, indices: torch.Tensor, soft: Soft, chunk: int = 512) -> torch.Tensor:
    """T^2 * the divergence summed over items (0-dim float tensor).

    ``scores`` is a ``tasks.base.ItemLogits``. Plain logits (items, classes) are gathered at the teacher's indices;
    hidden states (items, d) with the head's weight (classes, d) give the dot products with the k weight rows only,
    ``chunk`` items at a time under activation checkpointing, so neither (items, vocab) nor (items, k, d) is ever kept.
    """
    if values.shape[0] == 0:
        return _zero(scores)
    if scores.logits is not None:
        return (
            soft.temperature**2
            * divergence(gathered_logits(scores, indices), values, soft.kind, soft.temperature, soft.beta).sum()
        )
    from torch.utils.checkpoint import checkpoint

    total = torch.zeros((), dtype=torch.float32, device=values.device)
    for s in range(0, values.shape[0], chunk):
        part = slice(s, s + chunk)
        total = total + checkpoint(
            _linear_part, scores.hidden[part], scores.weight, indices[part], values[part], soft, use_reentrant=False
        )
    return soft.temperature**2 * total


def _linear_part(hidden, weight, indices, values, soft: Soft):
    rows = weight[indices].to(hidden.dtype)  # (chunk, k, d)
    student = torch.einsum("nd,nkd->nk", hidden, rows)  # (chunk, k)
    return divergence(student, values, soft.kind, soft.temperature, soft.beta).sum()


def _zero(scores) -> torch.Tensor:
    t = scores.logits if scores.logits is not None else scores.hidden
    return t.sum() * 0.0


def hidden_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """Summed per-example distance between pooled hidden states (examples, d): mse (mean over d) or cosine (1 - cos)."""
    student, teacher = student.float(), teacher.float()
    if kind == "mse":
        return ((student - teacher) ** 2).mean(-1).sum()
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).sum()
    raise ValueError(f"unknown hidden-state loss '{kind}'; choose mse or cosine")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden (batch, seq, d) over the positions where mask (batch, seq) is 1 -> (batch, d)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (batch, seq, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
