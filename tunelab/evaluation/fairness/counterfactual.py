"""Counterfactual probes: swap identity terms in texts and measure how predictions move.

For each text and category, the *source* group is the one whose terms occur most often in it; for every
other group a variant swaps the two groups' aligned terms (he -> she and she -> he), keeping case. A flip is a
variant whose predicted label differs from the original's. The shift is the change in the probability of the
reference label (the positive label when one is given, else the original prediction).
"""

from __future__ import annotations

import re
from collections import defaultdict


def _pattern(terms: list[str]) -> re.Pattern:
    alts = sorted({t for t in terms}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(t) for t in alts) + r")(?![\w-])", re.IGNORECASE)


def _match_case(src: str, word: str) -> str:
    if src.isupper() and len(src) > 1:
        return word.upper()
    if src[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def swap(text: str, a: list[str], b: list[str]) -> str:
    """Replace every term of ``a`` by its aligned term in ``b`` and vice versa (first alignment wins for repeats)."""
    table: dict[str, str] = {}
    for x, y in zip(a, b):
        table.setdefault(x.lower(), y)
    for x, y in zip(b, a):
        table.setdefault(x.lower(), y)
    pattern = _pattern(list(a) + list(b))
    return pattern.sub(lambda m: _match_case(m.group(0), table[m.group(0).lower()]), text)


def count_terms(text: str, terms: list[str]) -> int:
    return len(_pattern(terms).findall(text))


def variants(text: str, groups: dict[str, list[str]]) -> list[dict]:
    """[{"source", "target", "text"}] for one category; empty when the text holds none of its terms."""
    counts = {g: count_terms(text, ws) for g, ws in groups.items()}
    source = max(counts, key=counts.get)
    if counts[source] == 0:
        return []
    out = []
    for target, words in groups.items():
        if target != source:
            new = swap(text, groups[source], words)
            if new != text:
                out.append({"source": source, "target": target, "text": new})
    return out


def build(texts: list[str], lists: dict[str, dict[str, list[str]]]) -> list[dict]:
    """All variants of all texts: [{"index", "category", "source", "target", "text"}]."""
    out = []
    for i, text in enumerate(texts):
        for cat, groups in lists.items():
            out += [{"index": i, "category": cat, **v} for v in variants(text, groups)]
    return out


def summarise(
    original: list[list[float]],
    variant_probs: list[list[float]],
    probes: list[dict],
    labels: list[str],
    reference: int | None,
    examples: int = 5,
) -> dict:
    """Per category: texts probed, variants, flip rate, mean |shift|; per target group: flip rate and mean shift.

    Args:
        original: probabilities (texts, classes) of the original texts.
        variant_probs: probabilities of each probe's text, aligned with ``probes``.
        reference: class index whose probability shift is reported; None = each text's original prediction.
    """
    cats: dict[str, dict] = {}
    by_group: dict[tuple[str, str], list[tuple[bool, float]]] = defaultdict(list)
    flips_shown: dict[str, list] = defaultdict(list)
    for probe, pv in zip(probes, variant_probs):
        po = original[probe["index"]]
        pred_o = max(range(len(po)), key=po.__getitem__)
        pred_v = max(range(len(pv)), key=pv.__getitem__)
        ref = pred_o if reference is None else reference
        flip, shift = pred_o != pred_v, pv[ref] - po[ref]
        by_group[(probe["category"], probe["target"])].append((flip, shift))
        c = cats.setdefault(probe["category"], {"texts": set(), "variants": 0, "flips": 0, "abs_shift": 0.0})
        c["texts"].add(probe["index"])
        c["variants"] += 1
        c["flips"] += flip
        c["abs_shift"] += abs(shift)
        if flip and len(flips_shown[probe["category"]]) < examples:
            flips_shown[probe["category"]].append(
                {"index": probe["index"], "variant": probe["text"], "from": labels[pred_o], "to": labels[pred_v]}
            )
    out = {}
    for cat, c in cats.items():
        groups = {
            t: {
                "variants": len(v),
                "flip_rate": sum(f for f, _ in v) / len(v),
                "mean_shift": sum(s for _, s in v) / len(v),
            }
            for (k, t), v in by_group.items()
            if k == cat
        }
        out[cat] = {
            "texts": len(c["texts"]),
            "variants": c["variants"],
            "flip_rate": c["flips"] / c["variants"],
            "mean_abs_shift": c["abs_shift"] / c["variants"],
            "groups": groups,
            "flip_examples": flips_shown[cat],
        }
    total = sum(c["variants"] for c in cats.values())
    return {
        "reference": "original prediction" if reference is None else labels[reference],
        "variants": total,
        "flip_rate": sum(c["flips"] for c in cats.values()) / total if total else 0.0,
        "categories": out,
    }
