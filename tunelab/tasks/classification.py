"""Single-label sequence classification (single texts or text pairs).

Functions here are pure where they can be: encode rows to features, sum the loss, compute metrics
from label lists, turn logits into probabilities. torch is imported inside functions.
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Literal

from tunelab.data.sources import Row
from tunelab.errors import DataError
from tunelab.schema import Strict
from tunelab.tasks.base import ItemLogits, Prepared, Table, Task
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.objective import Objective

if TYPE_CHECKING:
    import torch

PREDICT_BATCH = 64  # texts per forward pass in ``predict``


class Config(Strict):
    """The ``task:`` section of classification (no options of its own; columns are in ``data:``)."""

    name: Literal["classification"] = "classification"


class Classification(Task):
    """One label per text (or text pair): a sequence-classification head on the encoder."""

    name = "classification"
    Config = Config
    auto_class = "AutoModelForSequenceClassification"
    row_kind = "text"
    balances = True
    metrics = (
        Metric("accuracy", True, "share of rows whose predicted label is the gold label"),
        Metric("macro_f1", True, "F1 averaged over classes (each class counts the same)"),
        Metric("loss", False, "mean cross-entropy of the gold label"),
    )

    def check(self, cfg) -> None:
        return None

    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        table = read_text_table(cfg, path, with_labels)
        return Table(table.rows, table.skipped)

    def label_space(self, rows: list[Row], source: str) -> list[str]:
        return label_space(rows, source)

    def check_rows(self, cfg, rows: list[Row], source: str, log) -> None:
        from tunelab.data import labels

        labels.check(rows, source, cfg.data.min_label_rows, cfg.data.label_check, log)

    def stratify_key(self, row: Row):
        return row.label

    def model_kwargs(self, labels: list[str] | None) -> dict:
        return model_kwargs(labels) if labels is not None else {}

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        from tunelab.data import cache
        from tunelab.data.collate import pad_batch

        feats = {}
        for split, rows in splits.items():
            key = cache.key(rows, tokenizer, task=self.name, labels=labels, max_length=cfg.model.max_length)
            build = partial(encode, rows, tokenizer, labels, cfg.model.max_length, split_source(cfg, split))
            feats[split] = cache.cached(key, build, cfg.speed.cache, log)
        collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
        dev = evaluator(feats["dev"], labels, collate)
        test = evaluator(feats["test"], labels, collate) if "test" in feats else None
        groups = [f["labels"] for f in feats["train"]]
        weights = class_weights(cfg.train.class_weights, groups, labels, cfg.data.train)
        info = {"class_weights": dict(zip(labels, weights))} if weights is not None else {}
        if weights is not None:
            log("class weights: " + ", ".join(f"{n} {w:.3f}" for n, w in zip(labels, weights)))
        objective = Objective(self.forward, partial(weighted_loss, weights=weights, gamma=cfg.train.focal_gamma), count)
        return Prepared(feats, collate, objective, dev, dev, test, info=info, groups=groups)

    def forward(self, model, batch: dict) -> dict:
        return {"logits": model(**model_inputs(batch)).logits}  # (batch, classes)

    def loss(self, outputs: dict, batch: dict):
        import torch.nn.functional as F

        # unlabelled transfer rows carry -100 (cross_entropy's ignore_index): they add nothing and are not counted
        return F.cross_entropy(outputs["logits"].float(), batch["labels"], reduction="sum"), count(batch)

    def item_logits(self, outputs: dict, batch: dict) -> ItemLogits:
        import torch

        logits = outputs["logits"]  # (batch, classes): one item per example
        return ItemLogits(torch.arange(logits.shape[0], device=logits.device), batch["labels"], logits)

    def evaluator(self, run, rows: list[Row], source: str, log) -> Evaluator:
        from tunelab.data.collate import pad_batch

        feats = encode(rows, run.tokenizer, run.labels, run.cfg.model.max_length, source)
        return evaluator(feats, run.labels, partial(pad_batch, pad_id=run.tokenizer.pad_token_id))

    def parse_inputs(self, lines, source: str) -> list[Row]:
        return parse_lines(lines, source)

    def predict(self, run, inputs: list[Row]) -> list[dict]:
        # the run's fitted temperature (1.0 without one): predict and serve give calibrated probabilities
        out = predict(
            run.model, run.tokenizer, run.labels, inputs, run.cfg.model.max_length, temperature=run.temperature
        )
        return [
            {"text": r.text, **({"text_pair": r.text_pair} if r.text_pair is not None else {}), **o}
            for r, o in zip(inputs, out)
        ]

    def reference(self, row: Row) -> tuple[Row, dict]:
        return Row(row.text, row.text_pair, None, row.line), {"label": row.label}

    def prompt_template(self, run) -> None:
        return None

    def prompts(self, rows: list) -> list:
        return []


# ---------------------------------------------------------------- pure parts


def split_source(cfg, split: str) -> str:
    """How messages name a split's file."""
    names = {"train": cfg.data.train, "dev": cfg.data.dev or f"{cfg.data.train} (dev split)", "test": cfg.data.test}
    return names.get(split) or split


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
    features = tokenize_texts(rows, tokenizer, max_length)
    for f, r in zip(features, rows):
        f["labels"] = index[r.label] if r.label is not None else -100  # -100: no label (ignored by loss and count)
    return features


def tokenize_texts(rows: list[Row], tokenizer, max_length: int) -> list[dict]:
    """One feature dict per row (input_ids, attention_mask, token_type_ids where the model has them), no padding:
    the text, or the text and its pair, truncated to ``max_length``. Each text task adds its own label key."""
    if not rows:
        return []
    pairs = [r.text_pair for r in rows] if rows[0].text_pair is not None else None
    enc = tokenizer([r.text for r in rows], pairs, truncation=True, max_length=max_length)
    keep = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    return [{k: enc[k][i] for k in keep} for i in range(len(rows))]


def class_weights(spec, ids: list[int], labels: list[str], source: str) -> list[float] | None:
    """Per-class loss weights in label order: ``balanced`` (n / (classes * count), from the training label ids), a
    {label: weight} mapping (others 1; an unknown label is an error naming ``source``), or None."""
    if spec is None:
        return None
    if spec == "balanced":
        counts = [ids.count(i) for i in range(len(labels))]
        return [len(ids) / (len(labels) * c) if c else 0.0 for c in counts]
    unknown = sorted(set(spec) - set(labels))
    if unknown:
        raise DataError(
            f"train.class_weights: label '{unknown[0]}' is not in the training data of {source}; labels: {', '.join(labels)}"
        )
    return [float(spec.get(n, 1.0)) for n in labels]


def weighted_loss(outputs: dict, batch: dict, weights: list[float] | None = None, gamma: float | None = None):
    """(sum over rows of w[y] * (1 - p_y)^gamma * -log p_y, rows): cross-entropy, class-weighted and/or focal.

    Rows are summed (not divided by their total weight) so the loop's division by the row count keeps
    micro-batches additive; with neither option it equals plain summed cross-entropy."""
    import torch
    import torch.nn.functional as F

    labels = batch["labels"]  # (batch,); -100 = an unlabelled transfer row: no term, not counted
    known = labels != -100
    safe = labels.clamp_min(0)
    logp = F.log_softmax(outputs["logits"].float(), dim=-1).gather(-1, safe[:, None])[:, 0]  # (batch,)
    per = -logp
    if gamma:
        per = per * (1 - logp.exp()).clamp_min(0) ** gamma
    if weights is not None:
        per = per * torch.tensor(weights, device=per.device)[safe]
    return (per * known).sum(), int(known.sum())


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def count(batch: dict) -> int:
    return int((batch["labels"] != -100).sum())


def head_logits(model, batch: dict) -> torch.Tensor:
    """(batch, classes) logits of a sequence-classification model for a batch already on its device."""
    return model(**model_inputs(batch)).logits


def predict_proba(model, batches, temperature: float = 1.0, logits_fn=head_logits) -> torch.Tensor:
    """Class probabilities (examples, classes) of softmax(logits / temperature) for an iterable of collated batches, in
    order (no grad, model's device). ``logits_fn(model, batch)`` gives the class logits (a prompt-based classifier
    reads them from its LM head)."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for batch in batches:
            on_device = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            out.append(torch.softmax(logits_fn(model, on_device).float() / temperature, dim=-1).cpu())
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


def _length_batches(features: list[dict], indices: list[int], batch_size: int) -> list[list[int]]:
    """``indices`` sorted by length and cut into batches (little padding)."""
    order = sorted(indices, key=lambda i: len(features[i]["input_ids"]))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def evaluator(
    features: list[dict], labels: list[str], collate, batch_size: int = 64, logits_fn=head_logits
) -> Evaluator:
    """Dev loss and metrics: score = class probabilities per example, summarize = metrics + mean NLL."""

    def score(model, indices: list[int]) -> list:
        probs = {}
        for idx in _length_batches(features, indices, batch_size):
            for i, p in zip(idx, predict_proba(model, [collate([features[i] for i in idx])], logits_fn=logits_fn)):
                probs[i] = p
        return [probs[i] for i in indices]

    def summarize(results: list) -> dict:
        import torch

        y_true = [f["labels"] for f in features]
        probs = torch.stack(results) if results else torch.empty(0, len(labels))
        nll = (
            -torch.log(probs[torch.arange(len(y_true)), torch.tensor(y_true, dtype=torch.long)].clamp_min(1e-12))
            .mean()
            .item()
            if y_true
            else 0.0
        )
        return {**metrics(y_true, probs.argmax(-1).tolist(), labels), "loss": nll}

    def answers(results: list) -> tuple[list, list]:
        """Gold and predicted label names."""
        return [labels[f["labels"]] for f in features], [labels[int(p.argmax())] for p in results]

    return Evaluator(len(features), score, summarize, answers)


def predict(
    model, tokenizer, labels: list[str], rows: list[Row], max_length: int, temperature: float = 1.0
) -> list[dict]:
    """Label and class probabilities (softmax of logits / temperature: the run's fitted temperature scaling) per row,
    in input order."""
    import torch

    from tunelab.data.collate import pad_batch

    unlabelled = [Row(r.text, r.text_pair, None, r.line) for r in rows]
    feats = encode(unlabelled, tokenizer, labels, max_length, source="input")
    probs = torch.empty(len(feats), len(labels))
    for idx in _length_batches(feats, list(range(len(feats))), PREDICT_BATCH):
        probs[idx] = predict_proba(model, [pad_batch([feats[i] for i in idx], tokenizer.pad_token_id)], temperature)
    return [
        {"label": labels[int(p.argmax())], "probs": {n: round(float(x), 6) for n, x in zip(labels, p)}} for p in probs
    ]


def parse_lines(lines, source: str) -> list[Row]:
    """Each non-blank line is a text, or a JSON object with "text" (and optional "text_pair")."""
    from tunelab.errors import TunelabError

    rows = []
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not line.lstrip().startswith("{"):
            rows.append(Row(line, None, None, n))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TunelabError(f"{source}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj.get("text"), str) or not obj["text"].strip():
            raise TunelabError(f'{source}:{n}: JSON input needs a non-empty "text" string')
        pair = obj.get("text_pair")
        if pair is not None and not isinstance(pair, str):
            raise TunelabError(f'{source}:{n}: "text_pair" must be a string')
        rows.append(Row(obj["text"], pair, None, n))
    pairs = {r.text_pair is None for r in rows}
    if len(pairs) > 1:
        raise TunelabError(f'{source}: give a "text_pair" for every input or for none')
    return rows


def read_text_table(cfg, path: str, with_labels: bool, label_kind: str = "class"):
    """``path`` read with the run's ``data:`` columns and format options (text tasks: classification, multi-label,
    regression); ``label_kind`` says how label cells are checked (class, set or number)."""
    from tunelab.data.sources import read_table

    data = cfg.data
    return read_table(
        path,
        text_column=data.text_column,
        text_pair_column=data.text_pair_column,
        label_column=data.label_column if with_labels else None,
        format=data.format,
        has_header=data.has_header,
        on_error=data.on_error,
        delimiter=data.delimiter,
        encoding=data.encoding,
        label_kind=label_kind,
    )
