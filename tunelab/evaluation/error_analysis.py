"""Error analysis: the most confident mistakes, confusions with examples, accuracy per length bucket.

Pure functions over prediction records (plain dicts), so every task can feed them:

- classification records: ``{"text", "line", "gold": int, "probs": [float, ...], "length": tokens}``
- token classification sentences: ``{"text", "line", "tokens", "gold": [tags], "pred": [tags], "probs": [word prob]}``

``mistakes`` turns records into the JSONL export (one mistake per line, most confident first).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from tunelab.data import tagging

LENGTH_EDGES = (8, 16, 32, 64, 128)


def buckets(edges: tuple[int, ...] = LENGTH_EDGES) -> list[tuple[int, float]]:
    """[lo, hi] length ranges: 1-8, 9-16, ..., and one open bucket above the last edge."""
    out, lo = [], 1
    for e in edges:
        out.append((lo, e))
        lo = e + 1
    return out + [(lo, float("inf"))]


def _bucket_name(lo: int, hi: float) -> str:
    return f"{lo}+" if hi == float("inf") else f"{lo}-{hi}"


# ---------------------------------------------------------------- classification


def classification_mistakes(records: list[dict], labels: list[str]) -> list[dict]:
    """Every wrong prediction, most confident first: text, line, gold, predicted, confidence, probabilities."""
    out = []
    for r in records:
        pred = max(range(len(r["probs"])), key=r["probs"].__getitem__)
        if pred != r["gold"]:
            out.append(
                {
                    "line": r["line"],
                    "text": r["text"],
                    "gold": labels[r["gold"]],
                    "pred": labels[pred],
                    "confidence": round(r["probs"][pred], 6),
                    "gold_prob": round(r["probs"][r["gold"]], 6),
                    "length": r["length"],
                    "probs": {n: round(p, 6) for n, p in zip(labels, r["probs"])},
                }
            )
    return sorted(out, key=lambda m: -m["confidence"])


def classification(
    records: list[dict], labels: list[str], top: int = 10, examples: int = 3, edges: tuple[int, ...] = LENGTH_EDGES
) -> dict:
    """Summary for the report: top confident mistakes, confusion pairs with examples, accuracy per length bucket."""
    mistakes = classification_mistakes(records, labels)
    by_pair: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for m in mistakes:
        by_pair[(m["gold"], m["pred"])].append(m)
    confusions = [
        {"gold": g, "pred": p, "count": len(ms), "examples": [_short(m) for m in ms[:examples]]}
        for (g, p), ms in sorted(by_pair.items(), key=lambda kv: -len(kv[1]))
    ]
    rows = []
    for lo, hi in buckets(edges):
        inside = [r for r in records if lo <= r["length"] <= hi]
        if inside:
            right = sum(max(range(len(r["probs"])), key=r["probs"].__getitem__) == r["gold"] for r in inside)
            rows.append({"bucket": _bucket_name(lo, hi), "count": len(inside), "accuracy": right / len(inside)})
    return {
        "examples": len(records),
        "mistakes": len(mistakes),
        "confident_mistakes": [_short(m) for m in mistakes[:top]],
        "confusions": confusions,
        "length_buckets": rows,
        "length_unit": "tokens",
    }


def _short(m: dict) -> dict:
    return {k: m[k] for k in ("line", "text", "gold", "pred", "confidence") if k in m}


# ---------------------------------------------------------------- token classification


def entity_mistakes(sentences: list[dict]) -> list[dict]:
    """Span-level mistakes per sentence: spurious / wrong type / wrong boundary (predicted) and missed (gold).

    Each has the sentence line and text, the span text, gold and predicted type (O = none) and, for
    predicted spans, the mean word probability as its confidence; most confident first, missed last.
    """
    out = []
    for s in sentences:
        gold = {(a, b): t for a, b, t in tagging.spans(s["gold"])}
        pred = {(a, b): t for a, b, t in tagging.spans(s["pred"])}
        for (a, b), t in pred.items():
            if gold.get((a, b)) == t:
                continue
            overlap = [g for g in gold if g[0] < b and a < g[1]]
            kind = "wrong_type" if (a, b) in gold else "boundary" if overlap else "spurious"
            true = gold.get((a, b)) or (gold[overlap[0]] if overlap else "O")
            conf = sum(s["probs"][a:b]) / (b - a)
            out.append(_span(s, a, b, kind, true, t, round(conf, 6)))
        for (a, b), t in gold.items():
            if (a, b) not in pred and not any(p[0] < b and a < p[1] for p in pred):
                out.append(_span(s, a, b, "missed", t, "O", None))
    return sorted(out, key=lambda m: -(m["confidence"] if m["confidence"] is not None else -1))


def _span(s: dict, a: int, b: int, kind: str, gold: str, pred: str, conf) -> dict:
    return {
        "line": s["line"],
        "text": s["text"],
        "span": " ".join(s["tokens"][a:b]),
        "kind": kind,
        "gold": gold,
        "pred": pred,
        "confidence": conf,
    }


def token_classification(
    sentences: list[dict], top: int = 10, examples: int = 3, edges: tuple[int, ...] = LENGTH_EDGES
) -> dict:
    """Summary for NER: top confident wrong entities, (gold type, predicted type) confusions with examples,
    entity F1 per sentence-length bucket (words)."""
    mistakes = entity_mistakes(sentences)
    by_pair: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for m in mistakes:
        by_pair[(m["gold"], m["pred"])].append(m)
    confusions = [
        {"gold": g, "pred": p, "count": len(ms), "examples": [_span_short(m) for m in ms[:examples]]}
        for (g, p), ms in sorted(by_pair.items(), key=lambda kv: -len(kv[1]))
    ]
    rows = []
    for lo, hi in buckets(edges):
        inside = [s for s in sentences if lo <= len(s["tokens"]) <= hi]
        if inside:
            rows.append({"bucket": _bucket_name(lo, hi), "count": len(inside), "f1": _entity_f1(inside)})
    kinds = Counter(m["kind"] for m in mistakes)
    return {
        "examples": len(sentences),
        "mistakes": len(mistakes),
        "mistake_kinds": dict(kinds),
        "confident_mistakes": [_span_short(m) for m in mistakes if m["confidence"] is not None][:top],
        "confusions": confusions,
        "length_buckets": rows,
        "length_unit": "words",
    }


def _span_short(m: dict) -> dict:
    return {k: m[k] for k in ("line", "span", "kind", "gold", "pred", "confidence", "text")}


def _entity_f1(sentences: list[dict]) -> float:
    tp = fp = fn = 0
    for s in sentences:
        gold, pred = set(tagging.spans(s["gold"])), set(tagging.spans(s["pred"]))
        tp += len(gold & pred)
        fp += len(pred - gold)
        fn += len(gold - pred)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


# ---------------------------------------------------------------- export


def write_jsonl(mistakes: list[dict], path: Path) -> Path:
    """One mistake per line (UTF-8 JSON), written to a temporary file and renamed into place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in mistakes), encoding="utf-8")
    tmp.replace(path)
    return path
