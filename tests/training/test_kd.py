"""Distillation losses against hand computations (plain Python math), and the chunked LM path against the plain one."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.tasks.base import ItemLogits
from tunelab.training import kd


def softmax(xs, t=1.0):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


S, T = [1.0, 2.0, 0.5], [2.5, 0.0, 1.0]  # student and teacher logits of one item


def test_forward_and_reverse_kl_match_hand_computation():
    for temp in (1.0, 2.0):
        p, q = softmax(T, temp), softmax(S, temp)
        got_f = kd.divergence(torch.tensor([S]), torch.tensor([T]), "forward_kl", temp)
        got_r = kd.divergence(torch.tensor([S]), torch.tensor([T]), "reverse_kl", temp)
        assert got_f.item() == pytest.approx(kl(p, q), rel=1e-5)
        assert got_r.item() == pytest.approx(kl(q, p), rel=1e-5)
    # two classes, T = 1: KL(softmax([2, 1]) || softmax([1, 2])) = tanh(1/2) * 1
    assert kd.divergence(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 1.0]]), "forward_kl", 1.0).item() == (
        pytest.approx(math.tanh(0.5), rel=1e-5)
    )


def test_generalized_jsd_matches_hand_computation():
    p, q = softmax(T, 2.0), softmax(S, 2.0)
    for beta in (0.1, 0.5, 0.9):
        m = [beta * a + (1 - beta) * b for a, b in zip(p, q)]
        want = beta * kl(p, m) + (1 - beta) * kl(q, m)
        got = kd.divergence(torch.tensor([S]), torch.tensor([T]), "jsd", 2.0, beta)
        assert got.item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="beta must be in"):
        kd.divergence(torch.tensor([S]), torch.tensor([T]), "jsd", 1.0, 1.0)
    with pytest.raises(ValueError, match="forward_kl, reverse_kl, jsd"):
        kd.divergence(torch.tensor([S]), torch.tensor([T]), "kl", 1.0)


def test_distill_sum_scales_by_t_squared_and_sums_items():
    student, teacher = torch.tensor([S, T]), torch.tensor([T, S])
    values, indices = kd.top_k(teacher, 8)  # k >= classes: every class, in class order
    assert indices.tolist() == [[0, 1, 2], [0, 1, 2]]
    got = kd.distill_sum(
        ItemLogits(torch.arange(2), torch.tensor([0, -100]), student), values, indices, kd.Soft("forward_kl", 2.0)
    )
    want = 4.0 * (kl(softmax(T, 2), softmax(S, 2)) + kl(softmax(S, 2), softmax(T, 2)))
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_top_k_renormalises_over_the_teachers_support():
    teacher = torch.tensor([[3.0, 1.0, 2.0, -1.0]])
    student = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    values, indices = kd.top_k(teacher, 2)
    assert indices.tolist() == [[0, 2]]
    got = kd.distill_sum(
        ItemLogits(torch.arange(1), torch.tensor([-100]), student), values, indices, kd.Soft("forward_kl", 1.0)
    )
    assert got.item() == pytest.approx(kl(softmax([3.0, 2.0]), softmax([0.0, 2.0])), rel=1e-5)


def test_chunked_lm_path_equals_plain_logits_and_gradients():
    torch.manual_seed(0)
    hidden = torch.randn(7, 5, requires_grad=True)
    weight = torch.randn(11, 5, requires_grad=True)
    teacher = torch.randn(7, 11)
    values, indices = kd.top_k_linear(teacher @ torch.eye(11), torch.eye(11), 4, chunk=3)  # top-k of the teacher
    ref_v, ref_i = torch.topk(teacher, 4)
    assert torch.equal(indices, ref_i) and torch.allclose(values, ref_v)
    for kind in kd.DIVERGENCES:
        soft = kd.Soft(kind, 2.0, 0.3)
        plain = kd.distill_sum(ItemLogits(None, None, hidden @ weight.T), values, indices, soft)
        g_plain = torch.autograd.grad(plain, (hidden, weight))
        chunked = kd.distill_sum(ItemLogits(None, None, hidden=hidden, weight=weight), values, indices, soft, chunk=3)
        g_chunk = torch.autograd.grad(chunked, (hidden, weight))
        assert chunked.item() == pytest.approx(plain.item(), rel=1e-5)
        for a, b in zip(g_plain, g_chunk):
            assert torch.allclose(a, b, atol=1e-5)


def test_hidden_losses_and_pooling_match_hand_computation():
    a, b = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert kd.hidden_loss(a, b, "mse").item() == pytest.approx((1 + 1) / 2 + (1 + 1) / 2)
    assert kd.hidden_loss(a, b, "cosine").item() == pytest.approx((1 - 0.0) + (1 - 1.0), abs=1e-6)
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert kd.mean_pool(h, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]
