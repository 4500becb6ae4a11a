"""The continuous scheduler's per-row token choice, against hand-computed values."""

from __future__ import annotations

import math

import torch

from tunelab.serve.sampling import Sampling, choose, penalize, top_logprobs, warp


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    logits = torch.tensor([2.0, -2.0, 1.0, 0.5])
    out = penalize(logits, torch.tensor([0, 1]), None, Sampling(repetition_penalty=2.0))
    assert out.tolist() == [1.0, -4.0, 1.0, 0.5]
    assert logits.tolist() == [2.0, -2.0, 1.0, 0.5]  # pure: the input is untouched


def test_presence_and_frequency_penalties_follow_openai():
    counts = torch.tensor([0.0, 1.0, 3.0])
    out = penalize(
        torch.zeros(3),
        torch.tensor([], dtype=torch.long),
        counts,
        Sampling(presence_penalty=0.5, frequency_penalty=0.25),
    )
    assert out.tolist() == [0.0, -0.75, -1.25]  # - frequency * count - presence * (count > 0)


def test_temperature_top_k_and_top_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    kept = warp(logits, Sampling(do_sample=True, top_k=2))
    assert torch.isinf(kept[2:]).all() and torch.isfinite(kept[:2]).all()
    kept = warp(logits, Sampling(do_sample=True, top_p=0.8))  # 0.5 + 0.3 reach 0.8: two tokens stay
    assert torch.isfinite(kept).tolist() == [True, True, False, False]
    kept = warp(logits, Sampling(do_sample=True, top_p=0.01))  # at least the most likely token stays
    assert torch.isfinite(kept).tolist() == [True, False, False, False]
    assert torch.allclose(warp(logits, Sampling(do_sample=True, temperature=2.0)), logits / 2)


def test_choice_is_argmax_when_greedy_and_reproducible_with_a_generator():
    logits = torch.tensor([0.1, 3.0, 0.2])
    assert choose(logits, Sampling(), None) == 1
    draws = [choose(torch.zeros(50), Sampling(do_sample=True), torch.Generator().manual_seed(3)) for _ in range(2)]
    assert draws[0] == draws[1]


def test_top_logprobs_are_the_k_largest():
    lp = torch.log_softmax(torch.tensor([1.0, 3.0, 2.0]), -1)
    chosen, top = top_logprobs(lp, 0, 2)
    assert math.isclose(chosen, float(lp[0])) and [t for t, _ in top] == [1, 2]
