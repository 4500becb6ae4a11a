"""The causal-LM loss at target positions only, a chunk of vocabulary logits at a time (``speed.ce_chunk``).

Written by hand because no library op takes the cross-entropy of ``hidden @ weight.T`` without
materialising every logit. Kept apart from causal_lm.py so the task's config loads without torch.
"""

from __future__ import annotations

import torch


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropy of ``hidden @ weight.T`` against ``target``, chunk by chunk, with gradients made in the forward.

    The backward only scales the stored gradients, so no chunk's logits outlive its loop iteration.
    """

    @staticmethod
    def forward(ctx, hidden, weight, target, chunk: int, dtype: torch.dtype):
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        grad_h = torch.empty_like(hidden)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        w = weight.to(dtype)  # (vocab, hidden)
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, hidden.shape[0], chunk):
                h, t = hidden[s : s + chunk].to(dtype), target[s : s + chunk]
                logits = (h @ w.T).float()  # (chunk, vocab)
                lse = torch.logsumexp(logits, dim=-1)
                total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place: d loss / d logits = probs - onehot
                probs[torch.arange(t.shape[0], device=t.device), t] -= 1
                g = probs.to(dtype)
                grad_h[s : s + chunk] = (g @ w).to(hidden.dtype)
                if grad_w is not None:
                    grad_w += (g.T @ h).float()
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(grad_h, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        grad_weight = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return grad_h * grad_out.to(grad_h.dtype), grad_weight, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """Sum over rows of cross_entropy(hidden @ weight.T, target) without materialising all logits.

    hidden (n, d), weight (vocab, d), target (n,). Matmuls run in bf16 under bf16 autocast (like the
    plain head would), softmax and the loss in float32. Peak extra memory is one (chunk, vocab) block.
    """
    if hidden.shape[0] == 0:
        return (hidden.sum() + weight.sum()) * 0.0
    dtype = (
        torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled(hidden.device.type) else weight.dtype
    )
    return _LinearCrossEntropy.apply(hidden, weight, target, max(1, chunk), dtype)
