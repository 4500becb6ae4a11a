"""Single-label sequence classification (single texts or text pairs).

Functions here are pure where they can be: encode rows to features, sum the loss,
compute metrics from label lists, turn logits into probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunelab.data.sources import Row
from tunelab.errors import DataError

AUTO_CLASS = "AutoModelForSequenceClassification"
DEFAULT_METRIC = "accuracy"


def label_space(rows: list[Row], source: str) -> list[str]:
    """Sorted label names (numerically if all are integers); a single class is an error."""
    names = {r.label for r in rows}
    if len(names) < 2:
        raise DataError(
            f"{source}: only one class ({', '.join(map(repr, names))}) in the training data; classification needs at least two"
        )
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def model_kwargs(labels: list[str]) -> dict:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {n: i for i, n in enumerate(labels)},
    }


def encode_options(data_cfg) -> dict:
    """Extra data-config options ``encode``/``predict`` take (none for classification)."""
    return {}


def encode(rows: list[Row], tokenizer, labels: list[str], max_length: int, source: str) -> list[dict]:
    """Tokenize rows (no padding; batches are padded later) and map labels to ids.

    A label never seen in training is an error naming the file and line.
    """
    index = {n: i for i, n in enumerate(labels)}
    for r in rows:
        if r.label is not None and r.label not in index:
            raise DataError(
                f"{source}:{r.line}: label '{r.label}' was not seen in training; known labels: {', '.join(labels)}"
            )
    pairs = [r.text_pair for r in rows] if rows and rows[0].text_pair is not None else None
    enc = tokenizer([r.text for r in rows], pairs, truncation=True, max_length=max_length)
    keep = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    features = []
    for i, r in enumerate(rows):
        f = {k: enc[k][i] for k in keep}
        if r.label is not None:
            f["labels"] = index[r.label]
        features.append(f)
    return features


def loss(model, batch: dict) -> tuple[torch.Tensor, int]:
    """Sum of cross-entropy over the batch (the loop normalises), computed in float32."""
    labels = batch["labels"]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (batch, classes)
    return F.cross_entropy(logits.float(), labels, reduction="sum"), labels.numel()


def count(batch: dict) -> int:
    return int(batch["labels"].numel())


@torch.no_grad()
def predict_proba(model, batches) -> torch.Tensor:
    """Class probabilities (examples, classes) for an iterable of collated batches, in order."""
    out = []
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        out.append(torch.softmax(model(**inputs).logits.float(), dim=-1).cpu())
    return torch.cat(out)


def metrics(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix (rows = truth)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    correct = sum(int(a == b) for a, b in zip(y_true, y_pred))
    return {
        "accuracy": correct / max(len(y_true), 1),
        "macro_f1": float(f.mean()),
        "per_class": {
            labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i in ids
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def read(data_cfg, path: str, with_labels: bool = True):
    """Read a labelled (or, for prediction, unlabelled) file per the data config; returns a sources.Table."""
    from tunelab.data.sources import read_table

    return read_table(
        path,
        text_column=data_cfg.text_column,
        text_pair_column=data_cfg.text_pair_column,
        label_column=data_cfg.label_column if with_labels else None,
        format=data_cfg.format,
        has_header=data_cfg.has_header,
        on_error=data_cfg.on_error,
    )


def evaluate(model, features: list[dict], labels: list[str], collate, batch_size: int = 64) -> dict:
    """Dev loss and metrics; batches are sorted by length so padding stays small."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    batches = (collate([features[i] for i in order[s : s + batch_size]]) for s in range(0, len(order), batch_size))
    probs = torch.empty(len(features), len(labels))
    probs[order] = predict_proba(model, batches)
    y_true = [f["labels"] for f in features]
    nll = -torch.log(probs[torch.arange(len(y_true)), torch.tensor(y_true)].clamp_min(1e-12)).mean().item()
    return {**metrics(y_true, probs.argmax(-1).tolist(), labels), "loss": nll}


def predict(model, tokenizer, labels: list[str], rows: list[Row], max_length: int, batch_size: int = 64) -> list[dict]:
    """Label and class probabilities for each row, in input order."""
    from tunelab.data.collate import pad_batch

    unlabelled = [Row(r.text, r.text_pair, None, r.line) for r in rows]
    feats = encode(unlabelled, tokenizer, labels, max_length, source="input")
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
    batches = (
        pad_batch([feats[i] for i in order[s : s + batch_size]], tokenizer.pad_token_id)
        for s in range(0, len(order), batch_size)
    )
    probs = torch.empty(len(feats), len(labels))
    if feats:
        probs[order] = predict_proba(model, batches)
    return [
        {"label": labels[int(p.argmax())], "probs": {n: round(float(x), 6) for n, x in zip(labels, p)}} for p in probs
    ]
