"""The proximal term wraps any Objective: gradient = task gradient + mu * (w - anchor), per optimizer batch."""

from __future__ import annotations

import torch

from tunelab.training.objective import Objective
from tunelab.training.proximal import proximal_term, with_proximal


def _objective():
    def forward(model, batch):
        return model(batch["x"])

    def loss(out, batch):
        return ((out - batch["y"]) ** 2).sum(), len(batch["y"])

    return Objective(forward=forward, loss=loss, count=lambda b: len(b["y"]))


def test_gradient_adds_mu_times_distance_to_the_anchor():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    batch = {"x": torch.randn(5, 3), "y": torch.randn(5, 1)}
    anchors = [(p, p.detach().clone() + 0.5) for p in model.parameters()]
    plain = _objective()
    loss, n = plain.loss(plain.forward(model, batch), batch)
    (loss / n).backward()
    task_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    prox = with_proximal(plain, anchors, mu=0.3)
    loss, n = prox.loss(prox.forward(model, batch), batch)
    (loss / n).backward()  # the loop divides the loss sum by the batch's items
    for (p, a), g in zip(anchors, task_grads):
        assert torch.allclose(p.grad, g + 0.3 * (p.detach() - a), atol=1e-6)
    assert torch.isclose(proximal_term(anchors, 0.3), 0.15 * sum(((p - a) ** 2).sum() for p, a in anchors))


def test_zero_mu_is_the_inner_objective():
    plain = _objective()
    assert with_proximal(plain, [(torch.zeros(1), torch.zeros(1))], 0.0) is plain
