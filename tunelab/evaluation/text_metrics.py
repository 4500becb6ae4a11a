"""Metrics of generated text against one or more references: BLEU and chrF (sacrebleu), ROUGE-1/2/L (rouge-score).

Pure functions: strings in, numbers out. Each prediction may have its own number of references (SciTLDR dev rows
have 2 to 5 summaries). Corpus BLEU and chrF take every reference of a sentence (sacrebleu's multi-reference form:
reference streams padded with None where a sentence has fewer); ROUGE scores each prediction against each of its
references and keeps the best (rouge-score's ``score_multi``), then averages over predictions.
"""

from __future__ import annotations

from typing import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's reference streams: stream k holds each sentence's k-th reference, None where it has fewer."""
    width = max((len(r) for r in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def _check(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    empty = next((i for i, r in enumerate(references) if not r), None)
    if empty is not None:
        raise ValueError(f"prediction {empty}: no reference to score it against")


def bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, case-sensitive, 0-100) with all references per sentence."""
    import sacrebleu

    _check(predictions, references)
    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(predictions), _streams(references)).score)


def chrf(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2, 0-100) with all references per sentence."""
    import sacrebleu

    _check(predictions, references)
    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_chrf(list(predictions), _streams(references)).score)


def rouge(predictions: Sequence[str], references: Sequence[Sequence[str]], stemmer: bool = True) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 (0-1); each prediction scores against its best-matching reference."""
    from rouge_score import rouge_scorer

    _check(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, refs in zip(predictions, references):
        scores = scorer.score_multi(list(refs), pred)  # the best F1 over the references, per ROUGE type
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    n = max(len(predictions), 1)
    return {key: totals[key] / n for key in ROUGE_TYPES}


def all_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """bleu, chrf, rouge1, rouge2 and rougeL of the predictions (see the functions above)."""
    return {
        "bleu": bleu(predictions, references),
        "chrf": chrf(predictions, references),
        **rouge(predictions, references),
    }
