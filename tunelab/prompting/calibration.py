"""Contextual calibration (Zhao et al. 2021, "Calibrate before use"): pure tensor functions.

The prompt's bias is estimated by its prediction for content-free inputs ("N/A", "", "[MASK]") in place of the
real input; with ``W = diag(p_cf)^-1`` and ``b = 0`` the calibrated prediction is ``softmax(W p)``, i.e. the
label probabilities divided by the content-free ones and renormalised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def content_free_probs(scores: torch.Tensor) -> torch.Tensor:
    """Mean label distribution (labels,) over content-free inputs, from their label scores (n_cf, labels)."""
    return scores.float().softmax(-1).mean(0)


def calibrate(scores: torch.Tensor, p_cf: torch.Tensor) -> torch.Tensor:
    """Calibrated probabilities (inputs, labels): ``softmax(scores)`` divided by ``p_cf`` (labels,) or (inputs,
    labels), renormalised."""
    q = scores.float().softmax(-1) / p_cf.clamp_min(1e-12)
    return q / q.sum(-1, keepdim=True)
