"""Group metrics: per-group accuracy and macro-F1, demographic-parity and equalised-odds differences.

For each class c (one-vs-rest): selection rate P(pred = c | group), true-positive rate P(pred = c | y = c, group),
false-positive rate P(pred = c | y != c, group). The demographic-parity difference of c is the largest minus
the smallest selection rate across groups; the equalised-odds difference is the larger of the TPR and FPR
ranges (as fairlearn defines them for binary tasks). The summary reports the positive class when one is
given, else the worst class.
"""

from __future__ import annotations

from collections import defaultdict


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _range(values: list[float | None]) -> float:
    vals = [v for v in values if v is not None]
    return max(vals) - min(vals) if len(vals) >= 2 else 0.0


def metrics(
    y_true: list[int], y_pred: list[int], groups: list[str], labels: list[str], positive: int | None = None
) -> dict:
    from sklearn.metrics import f1_score

    idx: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        idx[g].append(i)
    per_group = {}
    for g, ids in sorted(idx.items()):
        t, p = [y_true[i] for i in ids], [y_pred[i] for i in ids]
        per_class = {}
        for c, name in enumerate(labels):
            pos = sum(1 for a in t if a == c)
            per_class[name] = {
                "selection_rate": sum(1 for b in p if b == c) / len(p),
                "tpr": _rate(sum(1 for a, b in zip(t, p) if a == c and b == c), pos),
                "fpr": _rate(sum(1 for a, b in zip(t, p) if a != c and b == c), len(t) - pos),
            }
        per_group[g] = {
            "examples": len(ids),
            "accuracy": sum(a == b for a, b in zip(t, p)) / len(ids),
            "macro_f1": float(f1_score(t, p, labels=list(range(len(labels))), average="macro", zero_division=0)),
            "per_class": per_class,
        }
    diffs = {}
    for name in labels:
        sel = [per_group[g]["per_class"][name]["selection_rate"] for g in per_group]
        tpr = [per_group[g]["per_class"][name]["tpr"] for g in per_group]
        fpr = [per_group[g]["per_class"][name]["fpr"] for g in per_group]
        diffs[name] = {
            "demographic_parity_difference": _range(sel),
            "equalized_odds_difference": max(_range(tpr), _range(fpr)),
        }
    shown = (
        labels[positive] if positive is not None else max(diffs, key=lambda n: diffs[n]["equalized_odds_difference"])
    )
    acc = [v["accuracy"] for v in per_group.values()]
    return {
        "groups": per_group,
        "per_class_differences": diffs,
        "class": shown,
        **diffs[shown],
        "accuracy_difference": _range(acc),
    }
