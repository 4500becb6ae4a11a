"""Beyond-accuracy evaluation of a trained model on a labelled split: calibration and error analysis.

ANALYSERS maps a task name (``cfg.task.name``) to its analyser; a task without one gets neither. Each analyser
declares ``calibrates`` (its predictions carry class logits, so temperature scaling applies) and has
``predict(model, tokenizer, labels, rows, run_cfg) -> Predictions`` and
``summarise(preds, labels, cfg, temperature) -> dict`` (the report's sections) and ``mistakes(preds, labels)``
(the JSONL export). Files written into a run folder:

    temperature.json     fitted temperature (classification)
    calibration.json     ECE / Brier / NLL / reliability bins before and after temperature scaling
    error_analysis.json  confident mistakes, confusions with examples, per-length-bucket scores
    errors.jsonl         every mistake, most confident first
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunelab.evaluation import calibration, error_analysis

CALIBRATION_FILE, ERRORS_FILE, ERRORS_JSONL = "calibration.json", "error_analysis.json", "errors.jsonl"


@dataclass
class Predictions:
    records: list[dict]  # error_analysis records
    logits: torch.Tensor | None = None  # (examples, classes), classification only
    gold: list[int] = field(default_factory=list)


# ---------------------------------------------------------------- classification


class Classification:
    calibrates = True

    @staticmethod
    @torch.no_grad()
    def predict(model, tokenizer, labels, rows, run_cfg, batch_size: int = 64) -> Predictions:
        from tunelab.data.collate import pad_batch
        from tunelab.tasks import classification

        feats = classification.encode(rows, tokenizer, labels, run_cfg.model.max_length, source="dev")
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
        device = next(model.parameters()).device
        logits = torch.empty(len(feats), len(labels))
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            batch = pad_batch([feats[i] for i in idx], tokenizer.pad_token_id)
            inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            logits[idx] = model(**inputs).logits.float().cpu()  # (batch, classes)
        gold = [f.get("labels") for f in feats]
        records = [
            {
                "line": r.line,
                "text": r.text if r.text_pair is None else f"{r.text} ||| {r.text_pair}",
                "gold": g,
                "length": len(f["input_ids"]),
            }
            for r, f, g in zip(rows, feats, gold)
        ]
        return Predictions(records, logits, gold)

    @staticmethod
    def with_probs(preds: Predictions, temperature: float) -> list[dict]:
        probs = torch.softmax(preds.logits / temperature, -1).tolist()
        return [{**r, "probs": p} for r, p in zip(preds.records, probs)]

    @staticmethod
    def summarise(preds: Predictions, labels, cfg, temperature: float | None) -> dict:
        recs = Classification.with_probs(preds, temperature or 1.0)
        return {
            "calibration": calibration.summary(preds.logits, preds.gold, cfg.calibration_bins, temperature),
            "errors": error_analysis.classification(
                recs, labels, cfg.top_mistakes, cfg.examples_per_confusion, tuple(cfg.length_edges)
            ),
        }

    @staticmethod
    def mistakes(preds: Predictions, labels, temperature: float) -> list[dict]:
        return error_analysis.classification_mistakes(Classification.with_probs(preds, temperature), labels)


# ---------------------------------------------------------------- token classification


class TokenClassification:
    calibrates = False

    @staticmethod
    def predict(model, tokenizer, labels, rows, run_cfg, batch_size: int = 64) -> Predictions:
        from functools import partial

        from tunelab.data.collate import pad_batch
        from tunelab.tasks import token_classification as tc

        feats = tc.encode(rows, tokenizer, labels, run_cfg.model.max_length, "dev", tc.Windowing.of(run_cfg.task))
        decoded, _ = tc.predict_sentences(
            model, feats, labels, partial(pad_batch, pad_id=tokenizer.pad_token_id), batch_size
        )
        records = [
            {"line": r.line, "text": r.text, "tokens": r.tokens, "gold": r.tags, "pred": tags, "probs": probs}
            for r, (tags, probs) in zip(rows, decoded)
        ]
        return Predictions(records)

    @staticmethod
    def summarise(preds: Predictions, labels, cfg, temperature: float | None) -> dict:
        return {
            "errors": error_analysis.token_classification(
                preds.records, cfg.top_mistakes, cfg.examples_per_confusion, tuple(cfg.length_edges)
            )
        }

    @staticmethod
    def mistakes(preds: Predictions, labels, temperature: float) -> list[dict]:
        return error_analysis.entity_mistakes(preds.records)


ANALYSERS = {"classification": Classification, "token_classification": TokenClassification}


# ---------------------------------------------------------------- run folder


def after_training(run_dir: Path, cfg, model, tokenizer, labels, dev_rows: list, log) -> dict:
    """On the dev split: fit the temperature (classification, when configured), write calibration and error analysis."""
    analyser = ANALYSERS.get(cfg.task.name)
    if analyser is None or not dev_rows:
        return {}
    was_training = model.training
    model.eval()
    preds = analyser.predict(model, tokenizer, labels, dev_rows, cfg)
    model.train(was_training)
    temperature = None
    if preds.logits is not None and cfg.analysis.fit_temperature:
        if len(preds.gold) < calibration.MIN_EXAMPLES:
            log(
                f"temperature scaling: not fitted, the dev split has {len(preds.gold)} examples (at least "
                f"{calibration.MIN_EXAMPLES} needed; tunelab calibrate RUN --data FILE fits on another labelled file)"
            )
        else:
            temperature = fit_and_store(run_dir, preds, "dev split at the end of training")
            log(f"temperature scaling: T = {temperature:.3f} fitted on {len(preds.gold)} dev examples")
    return write(run_dir, analyser, preds, labels, cfg.analysis, temperature)


def fit_and_store(run_dir: Path, preds: Predictions, source: str) -> float:
    t = calibration.fit_temperature(preds.logits, preds.gold)
    calibration.store_temperature(
        run_dir,
        t,
        source,
        len(preds.gold),
        calibration.nll(preds.logits, preds.gold),
        calibration.nll(preds.logits, preds.gold, t),
    )
    return t


def write(folder: Path, analyser, preds: Predictions, labels, analysis_cfg, temperature: float | None) -> dict:
    """calibration.json (when the task has logits), error_analysis.json and errors.jsonl into ``folder``."""
    summary = analyser.summarise(preds, labels, analysis_cfg, temperature)
    if "calibration" in summary:
        _write_json(folder / CALIBRATION_FILE, summary["calibration"])
    _write_json(folder / ERRORS_FILE, summary["errors"])
    error_analysis.write_jsonl(analyser.mistakes(preds, labels, temperature or 1.0), folder / ERRORS_JSONL)
    return summary


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
