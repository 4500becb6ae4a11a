"""Continual-learning parts against hand computations: forgetting, backward transfer, reservoir, EWC."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from tunelab.training.continual import Reservoir, backward_transfer, diagonal_fisher, ewc_penalty, forgetting

# R[i][j]: score on task j after stage i
R = [
    [0.90, 0.10, 0.20],
    [0.70, 0.85, 0.30],
    [0.60, 0.80, 0.88],
]


def test_forgetting_and_backward_transfer_match_hand_computation():
    # task 0: best before the end 0.90, final 0.60 -> 0.30; task 1: best 0.85, final 0.80 -> 0.05
    assert forgetting(R) == pytest.approx((0.30 + 0.05) / 2)
    # (0.60 - 0.90 + 0.80 - 0.85) / 2
    assert backward_transfer(R) == pytest.approx((-0.30 - 0.05) / 2)
    assert forgetting([[0.9]]) == 0.0 and backward_transfer([[0.9]]) == 0.0
    assert forgetting([[0.8, 0], [0.8, 0.9]]) == 0.0  # nothing forgotten


def test_reservoir_keeps_k_items_uniformly_and_resumes_exactly():
    counts = Counter()
    for seed in range(400):
        r = Reservoir(5, seed)
        for i in range(50):
            r.add(i)
        assert len(r.items) == 5 and r.seen == 50
        counts.update(r.items)
    # each of the 50 items kept with probability 5/50: about 40 times in 400 reservoirs (sd 6)
    assert len(counts) == 50 and min(counts.values()) > 16 and max(counts.values()) < 64
    a, b = Reservoir(3, 7), Reservoir(3, 7)
    for i in range(20):
        a.add(i)
    b.load_state_dict(a.state_dict())
    for i in range(20, 40):
        a.add(i)
        b.add(i)
    assert a.items == b.items
    with pytest.raises(ValueError, match="k >= 1"):
        Reservoir(0, 1)


def test_ewc_penalty_and_fisher_match_hand_computation():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0]]))
    anchors = {"weight": torch.tensor([[0.0, 1.0]])}
    fisher = {"weight": torch.tensor([[2.0, 3.0]])}
    # 0.5 * 4 * (2 * 1^2 + 3 * 1^2) = 10
    assert ewc_penalty(lin.named_parameters(), anchors, fisher, 4.0).item() == pytest.approx(10.0)
    with pytest.raises(ValueError, match="no parameter"):
        ewc_penalty(lin.named_parameters(), {}, {"other": torch.zeros(1)}, 1.0)
    # loss = w . x: gradient = x; Fisher = mean of x^2 over the batches
    batches = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0])]
    f = diagonal_fisher(lin, batches, lambda m, x: m(x).sum())
    assert f["weight"].tolist() == [[(1 + 9) / 2, (4 + 0) / 2]]
