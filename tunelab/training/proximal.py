"""A proximal term on the loop's first door: ``(mu / 2) * ||w - w_anchor||^2`` over the trainable tensors.

FedProx (Li et al. 2020) adds it to every client's local loss so local training stays near the global model it
started from; L2-SP regularisation towards pretrained weights is the same term. It wraps any ``Objective``: the
task's loss is untouched and the term is added per optimizer batch (the loop divides the loss sum by the batch's
item count, so the wrapped loss adds ``term * items`` of each micro-batch and the step minimises
``task loss + term`` exactly, whatever the accumulation or number of processes).
"""

from __future__ import annotations

from tunelab.training.objective import Objective


def proximal_term(pairs, mu: float):
    """``(mu / 2) * sum ||p - anchor||^2`` over ``(parameter, anchor)`` pairs, in float32 (a 0-dim tensor)."""
    total = None
    for param, anchor in pairs:
        sq = (param.float() - anchor).pow(2).sum()  # () per tensor
        total = sq if total is None else total + sq
    return 0.5 * mu * total


def with_proximal(inner: Objective, pairs: list, mu: float) -> Objective:
    """``inner`` plus the proximal term of ``pairs`` (each a trainable parameter and the fixed float32 tensor it is
    pulled towards, same shape). ``mu == 0`` gives ``inner`` back unchanged."""
    if mu == 0 or not pairs:
        return inner

    def loss(outputs, batch):
        loss_sum, items = inner.loss(outputs, batch)
        return loss_sum + proximal_term(pairs, mu) * items, items

    return Objective(forward=inner.forward, loss=loss, count=inner.count)
