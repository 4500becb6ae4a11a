"""Language of each text (py3langid), counted only where identification is reliable."""

from __future__ import annotations

MIN_WORDS = 5  # shorter texts are identified too unreliably to count
MIN_PROB = 0.99


def mix(texts: list[str], min_words: int = MIN_WORDS, min_prob: float = MIN_PROB) -> tuple[dict, list[str | None]]:
    """({"identified", "too_short_or_unsure", "languages": {code: count}}, language per text or None)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    per: list[str | None] = []
    for t in texts:
        lang = None
        if len(t.split()) >= min_words:
            code, prob = ident.classify(t)
            lang = code if prob >= min_prob else None
        per.append(lang)
    counts: dict[str, int] = {}
    for lang in per:
        if lang is not None:
            counts[lang] = counts.get(lang, 0) + 1
    found = sum(counts.values())
    summary = {
        "identified": found,
        "too_short_or_unsure": len(texts) - found,
        "languages": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
    }
    return summary, per
