"""Calibration of classifier probabilities: ECE, reliability diagram data, Brier score, temperature scaling.

Pure functions: tensors/lists in, numbers/dicts out. Temperature scaling (Guo et al., 2017) divides the
logits by one scalar T > 0 fitted by minimising the NLL on held-out (dev) logits; it never changes the
argmax, so accuracy is unchanged and only the confidence moves.
"""

from __future__ import annotations

import math

import torch


def _as_tensors(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise ValueError(
            f"probs must be (examples, classes) and labels (examples,); got {tuple(p.shape)} and {tuple(y.shape)}"
        )
    return p, y


def reliability(probs, labels, n_bins: int = 15) -> list[dict]:
    """Equal-width confidence bins over (0, 1]: per bin its edges, count, mean confidence and accuracy.

    Confidence is the top-class probability; a bin (lo, hi] holds the examples whose confidence falls in it
    (the first bin also takes confidence 0). Empty bins are kept (count 0, confidence/accuracy None) so the
    diagram shows where the model never is.
    """
    p, y = _as_tensors(probs, labels)
    conf, pred = p.max(dim=1)  # (examples,)
    correct = (pred == y).double()
    # bin index: ceil(conf * n) - 1, so 0.2 with 5 bins lands in (0.0, 0.2], the first bin
    idx = (torch.ceil(conf * n_bins) - 1).clamp(0, n_bins - 1).long()
    out = []
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        out.append(
            {
                "lo": b / n_bins,
                "hi": (b + 1) / n_bins,
                "count": n,
                "confidence": float(conf[mask].mean()) if n else None,
                "accuracy": float(correct[mask].mean()) if n else None,
            }
        )
    return out


def ece(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error: sum over equal-width bins of |bin| / n * |accuracy - mean confidence|."""
    bins = reliability(probs, labels, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        return 0.0
    return sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])


def brier(probs, labels) -> float:
    """Multi-class Brier score: mean over examples of sum over classes of (p_k - 1[y = k])^2 (0 is perfect, 2 worst).

    For two classes this is twice the common binary form (p_pos - y)^2.
    """
    p, y = _as_tensors(probs, labels)
    onehot = torch.nn.functional.one_hot(y, p.shape[1]).double()
    return float(((p - onehot) ** 2).sum(dim=1).mean()) if len(y) else 0.0


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / T)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    return float(torch.nn.functional.cross_entropy(z / temperature, y))


MIN_EXAMPLES = 20  # fewer labelled examples than this say too little about confidence to fit on
T_RANGE = (0.05, 20.0)


def fit_temperature(logits, labels, max_iter: int = 200) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) on these (dev) examples, kept within T_RANGE.

    Optimised over log T with L-BFGS (the NLL is smooth and one-dimensional); T > 1 softens an
    over-confident model, T < 1 sharpens an under-confident one. A dev set the model separates perfectly
    drives T towards 0 (ever sharper is ever better there); the range stops that from producing one-hot outputs.
    """
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    if z.ndim != 2 or len(y) != len(z) or len(y) == 0:
        raise ValueError(
            f"logits must be (examples, classes) with one label each; got {tuple(z.shape)} and {tuple(y.shape)}"
        )
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t):
        t = T_RANGE[0] if float(log_t.detach()) < 0 else T_RANGE[1]
    return min(max(t, T_RANGE[0]), T_RANGE[1])


def summary(logits, labels, n_bins: int = 15, temperature: float | None = None) -> dict:
    """ECE, Brier, NLL and reliability bins for the raw logits, and (with a temperature) after scaling."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    out = {"bins": n_bins, "before": _scores(z, labels, n_bins, 1.0)}
    if temperature is not None:
        out["temperature"] = temperature
        out["after"] = _scores(z, labels, n_bins, temperature)
    return out


def _scores(z: torch.Tensor, labels, n_bins: int, t: float) -> dict:
    p = torch.softmax(z / t, dim=-1)
    return {
        "ece": ece(p, labels, n_bins),
        "brier": brier(p, labels),
        "nll": nll(z, labels, t),
        "reliability": reliability(p, labels, n_bins),
    }


# ---------------------------------------------------------------- the run folder's temperature

TEMPERATURE_FILE = "temperature.json"


def stored_temperature(run_dir) -> float:
    """The temperature fitted for a run (temperature.json), or 1.0 when none was fitted."""
    import json
    from pathlib import Path

    path = Path(run_dir) / TEMPERATURE_FILE
    return float(json.loads(path.read_text(encoding="utf-8"))["temperature"]) if path.is_file() else 1.0


def store_temperature(
    run_dir, temperature: float, source: str, examples: int, nll_before: float, nll_after: float
) -> None:
    """Write temperature.json (atomically): the value and what it was fitted on."""
    import json
    from pathlib import Path

    path = Path(run_dir) / TEMPERATURE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "temperature": temperature,
                "fitted_on": source,
                "examples": examples,
                "nll_before": nll_before,
                "nll_after": nll_after,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    tmp.replace(path)
