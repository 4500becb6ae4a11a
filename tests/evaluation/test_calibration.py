"""Calibration metrics against hand-computed values; temperature scaling recovers a known temperature."""

import pytest
import torch

from tunelab.evaluation import calibration

# four examples, two classes: confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.55 (wrong)
PROBS = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]]
LABELS = [0, 1, 1, 0]


def test_ece_by_hand():
    # 5 bins: (0.4,0.6] holds 0.55 (acc 0); (0.6,0.8] holds 0.8 and 0.7 (acc 0.5, conf 0.75); (0.8,1] holds 0.9 (acc 1)
    expected = 1 / 4 * 0.55 + 2 / 4 * 0.25 + 1 / 4 * 0.1
    assert calibration.ece(PROBS, LABELS, n_bins=5) == pytest.approx(expected)


def test_reliability_bins_by_hand():
    bins = calibration.reliability(PROBS, LABELS, n_bins=5)
    assert [b["count"] for b in bins] == [0, 0, 1, 2, 1]
    assert bins[3]["confidence"] == pytest.approx(0.75) and bins[3]["accuracy"] == pytest.approx(0.5)
    assert bins[0]["confidence"] is None and bins[4]["lo"] == pytest.approx(0.8) and bins[4]["hi"] == 1.0


def test_brier_by_hand():
    expected = (0.02 + 1.28 + 0.18 + 0.605) / 4
    assert calibration.brier(PROBS, LABELS) == pytest.approx(expected)


def test_perfect_predictions_are_calibrated():
    assert calibration.ece([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == 0.0
    assert calibration.brier([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == 0.0


def test_temperature_recovers_a_known_overconfidence():
    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20000, 3, generator=gen) * 1.5
    labels = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=gen).squeeze(1)
    overconfident = true_logits * 3.0
    t = calibration.fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    s = calibration.summary(overconfident, labels, n_bins=15, temperature=t)
    assert s["after"]["ece"] < s["before"]["ece"] and s["after"]["nll"] < s["before"]["nll"]
    # scaling never moves the argmax
    assert torch.equal((overconfident / t).argmax(-1), overconfident.argmax(-1))


def test_temperature_below_one_for_underconfident_logits():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(5000, 2, generator=gen) * 2
    labels = torch.multinomial(torch.softmax(z, -1), 1, generator=gen).squeeze(1)
    assert calibration.fit_temperature(z / 2, labels) == pytest.approx(0.5, rel=0.08)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="examples, classes"):
        calibration.ece([0.5, 0.5], [0, 1])


def test_separable_dev_set_keeps_temperature_in_range():
    logits = torch.tensor([[5.0, -5.0], [-4.0, 4.0], [6.0, 0.0]] * 10)
    labels = torch.tensor([0, 1, 0] * 10)
    t = calibration.fit_temperature(logits, labels)  # every prediction right: sharper is always better
    assert calibration.T_RANGE[0] <= t < 1.0
