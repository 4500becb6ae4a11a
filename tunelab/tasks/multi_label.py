"""Multi-label classification: each text (or text pair) has a set of labels, possibly empty.

One sigmoid per label, trained with binary cross-entropy. A label is predicted when its probability reaches
its threshold: one fixed value for every label, or (``threshold: tune``) one per label chosen on the dev split
after training to maximise that label's F1. Tuned thresholds are part of the run (task_state.json): ``eval``,
``predict`` and ``serve`` use them, and the test split is scored with the dev-tuned values (never tuned on itself).

Labels in a file: a delimited string (``sports,business``; ``task.label_separator``), or a JSON list
(``["sports", "business"]``, in JSON/JSONL files or a CSV cell); ``[]`` is a row with no label.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from typing import Literal

from pydantic import Field, field_validator

from tunelab.data.sources import Row
from tunelab.errors import DataError, TunelabError
from tunelab.schema import Strict
from tunelab.tasks import classification as single
from tunelab.tasks.base import Prepared, Table, Task
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.objective import Objective

GRID = [round(0.05 * i, 2) for i in range(1, 20)]  # candidate thresholds 0.05 .. 0.95


class Config(Strict):
    """The ``task:`` section of multi_label."""

    name: Literal["multi_label"] = "multi_label"
    label_separator: str = Field(
        ",", description="Separator of the labels in a delimited label cell (`sports,business`); JSON lists need none."
    )
    threshold: Literal["tune"] | float = Field(
        "tune",
        description="Decision threshold on each label's probability: tune = per label, chosen on dev after training "
        "to maximise its F1 (saved with the run); a number in (0, 1) = that threshold for every label.",
    )

    @field_validator("threshold")
    @classmethod
    def _in_range(cls, v):
        if v != "tune" and not 0 < v < 1:
            raise ValueError("expected 'tune' or a number between 0 and 1")
        return v

    @field_validator("label_separator")
    @classmethod
    def _separator(cls, v: str) -> str:
        if not v or v.strip() != v or v.startswith("["):
            raise ValueError("expected a non-blank separator without surrounding spaces, e.g. ',' or '|'")
        return v


class MultiLabel(Task):
    """A set of labels per text: one sigmoid per label on a sequence-classification head."""

    name = "multi_label"
    Config = Config
    auto_class = "AutoModelForSequenceClassification"
    row_kind = "text"
    metrics = (
        Metric("micro_f1", True, "F1 over every (row, label) decision"),
        Metric("macro_f1", True, "F1 per label, averaged (each label counts the same)"),
        Metric("samples_f1", True, "F1 per row between predicted and gold label sets, averaged"),
        Metric("subset_accuracy", True, "share of rows whose predicted label set equals the gold set exactly"),
        Metric("loss", False, "mean binary cross-entropy per label"),
    )

    def check(self, cfg) -> None:
        return None

    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        table = single.read_text_table(cfg, path, with_labels, "set")
        # every label cell becomes the JSON list of its names here (errors with their line); later steps parse JSON
        sep, rows, skipped = cfg.task.label_separator, [], list(table.skipped)
        for r in table.rows:
            try:
                cell = None if r.label is None else json.dumps(label_set(r.label, sep, f"{path}:{r.line}"))
            except DataError as exc:
                if cfg.data.on_error == "raise":
                    raise
                skipped.append((r.line, str(exc).removeprefix(f"{path}:{r.line}: ")))
                continue
            rows.append(Row(r.text, r.text_pair, cell, r.line))
        if not rows:
            raise DataError(f"{path}: expected at least one data row, found none: all {len(skipped)} were skipped")
        return Table(rows, sorted(skipped))

    def label_space(self, rows: list[Row], source: str) -> list[str]:
        names = {name for r in rows for name in json.loads(r.label)}
        if len(names) < 2:
            raise DataError(
                f"{source}: {len(names)} distinct label(s) in the training data; multi-label classification needs at least two"
            )
        return sorted(names, key=int) if all(n.lstrip("-").isdigit() for n in names) else sorted(names)

    def check_rows(self, cfg, rows: list[Row], source: str, log) -> None:
        from tunelab.data import labels

        exploded = [Row(r.text, None, name, r.line) for r in rows for name in json.loads(r.label)]
        labels.check(exploded, source, cfg.data.min_label_rows, cfg.data.label_check, log)

    def stratify_key(self, row: Row):
        return row.label  # the exact label set (rare sets stay in train)

    def model_kwargs(self, labels: list[str] | None) -> dict:
        if labels is None:
            return {}
        return {**single.model_kwargs(labels), "problem_type": "multi_label_classification"}

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        from tunelab.data import cache

        feats = {}
        for split, rows in splits.items():
            key = cache.key(rows, tokenizer, task=self.name, labels=labels, max_length=cfg.model.max_length)
            build = partial(encode, rows, tokenizer, labels, cfg.model.max_length, single.split_source(cfg, split))
            feats[split] = cache.cached(key, build, cfg.speed.cache, log)
        collate = partial(pad_vectors, pad_id=tokenizer.pad_token_id)
        state: dict = {}
        fixed = None if cfg.task.threshold == "tune" else cfg.task.threshold
        dev = evaluator(feats["dev"], labels, collate, Thresholds(fixed, state, tune=fixed is None))
        test = evaluator(feats["test"], labels, collate, Thresholds(fixed, state)) if "test" in feats else None
        return Prepared(feats, collate, Objective(self.forward, self.loss, count), dev, dev, test, task_state=state)

    def forward(self, model, batch: dict) -> dict:
        return {"logits": model(**single.model_inputs(batch)).logits}  # (batch, labels)

    def loss(self, outputs: dict, batch: dict):
        import torch.nn.functional as F

        targets = batch["targets"]  # (batch, labels) of 0/1
        per_label = F.binary_cross_entropy_with_logits(outputs["logits"].float(), targets.float(), reduction="none")
        return per_label.mean(dim=-1).sum(), int(targets.shape[0])

    def item_logits(self, outputs: dict, batch: dict):
        # a softmax divergence over classes has no meaning for independent per-label (sigmoid) outputs
        raise TunelabError(
            f"task {self.name}: distillation (soft targets over classes) is not supported for independent per-label (sigmoid) outputs"
        )

    def evaluator(self, run, rows: list[Row], source: str, log) -> Evaluator:
        feats = encode(rows, run.tokenizer, run.labels, run.cfg.model.max_length, source)
        collate = partial(pad_vectors, pad_id=run.tokenizer.pad_token_id)
        return evaluator(feats, run.labels, collate, run_thresholds(run))

    def parse_inputs(self, lines, source: str) -> list[Row]:
        return single.parse_lines(lines, source)

    def predict(self, run, inputs: list[Row]) -> list[dict]:
        unlabelled = [Row(r.text, r.text_pair, None, r.line) for r in inputs]
        feats = encode(unlabelled, run.tokenizer, run.labels, run.cfg.model.max_length, "input")
        probs = scores(run.model, feats, partial(pad_vectors, pad_id=run.tokenizer.pad_token_id))
        cut = run_thresholds(run).values(len(run.labels))
        out = []
        for r, p in zip(inputs, probs.tolist()):
            chosen = [n for n, x, t in zip(run.labels, p, cut) if x >= t]
            pair = {"text_pair": r.text_pair} if r.text_pair is not None else {}
            out.append(
                {"text": r.text, **pair, "labels": chosen, "probs": {n: round(x, 6) for n, x in zip(run.labels, p)}}
            )
        return out

    def reference(self, row: Row) -> tuple[Row, dict]:
        return Row(row.text, row.text_pair, None, row.line), {"labels": json.loads(row.label)}

    def prompt_template(self, run) -> None:
        return None

    def prompts(self, rows: list) -> list:
        return []


# ---------------------------------------------------------------- pure parts


def label_set(cell: str, sep: str, where: str) -> list[str]:
    """The labels of one cell: a JSON list (``["a", "b"]``), or a ``sep``-delimited string; duplicates refused."""
    if cell.lstrip().startswith("["):
        try:
            names = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: label list is not valid JSON ({exc.msg}): {cell[:60]!r}") from None
        if not isinstance(names, list) or any(not isinstance(n, (str, int)) or isinstance(n, bool) for n in names):
            raise DataError(f"{where}: expected a JSON list of label names, found {cell[:60]!r}")
        names = [str(n).strip() for n in names]
    else:
        names = [n.strip() for n in cell.split(sep)]
    if any(not n for n in names):
        raise DataError(f"{where}: empty label name in {cell[:60]!r} (separator {sep!r}; `[]` means no label)")
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise DataError(f"{where}: label {dup[0]!r} is listed twice in {cell[:60]!r}")
    return names


def encode(rows: list[Row], tokenizer, labels: list[str], max_length: int, source: str) -> list[dict]:
    """Tokenize rows (no padding) and turn label sets (JSON lists, as ``read`` leaves them) into 0/1 vectors; a
    label never seen in training names file and line."""
    index = {n: i for i, n in enumerate(labels)}
    targets = []
    for r in rows:
        if r.label is None:
            targets.append(None)
            continue
        vec = [0.0] * len(labels)
        for name in json.loads(r.label):
            if name not in index:
                raise DataError(
                    f"{source}:{r.line}: label '{name}' was not seen in training; known labels: {', '.join(labels)}"
                )
            vec[index[name]] = 1.0
        targets.append(vec)
    features = single.tokenize_texts(rows, tokenizer, max_length)
    for f, target in zip(features, targets):
        if target is not None:
            f["targets"] = target
    return features


class Thresholds:
    """Where an evaluation's thresholds come from: a fixed value, or the per-label values in ``state``.

    With ``tune`` the evaluation chooses them on its own scores (dev) and stores them in ``state`` (the task state
    the recipe saves); without it, it reads what a dev evaluation stored (test, eval, predict), 0.5 if none.
    """

    def __init__(self, fixed: float | None, state: dict, tune: bool = False):
        self.fixed, self.state, self.tune = fixed, state, tune

    def values(self, n: int) -> list[float]:
        if self.fixed is not None:
            return [self.fixed] * n
        return list(self.state.get("thresholds", [0.5] * n))


def run_thresholds(run) -> Thresholds:
    """A loaded run's thresholds: its fixed task.threshold, or the tuned ones saved with it."""
    fixed = run.cfg.task.threshold
    return Thresholds(None if fixed == "tune" else fixed, dict(run.task_state))


def tune_thresholds(probs: list[list[float]], gold: list[list[float]]) -> list[float]:
    """Per label, the grid threshold with the best F1 on (probs, gold) (ties: closest to 0.5; no positives: 0.5)."""
    out = []
    for j in range(len(probs[0]) if probs else 0):
        p = [row[j] for row in probs]
        g = [row[j] > 0.5 for row in gold]
        if not any(g):
            out.append(0.5)
            continue
        best = max(GRID, key=lambda t: (_f1(p, g, t), -abs(t - 0.5)))
        out.append(best)
    return out


def _f1(p: list[float], g: list[bool], t: float) -> float:
    tp = sum(1 for x, y in zip(p, g) if x >= t and y)
    fp = sum(1 for x, y in zip(p, g) if x >= t and not y)
    fn = sum(1 for x, y in zip(p, g) if x < t and y)
    return 2 * tp / max(2 * tp + fp + fn, 1)


def metrics(gold: list[list[int]], pred: list[list[int]], labels: list[str]) -> dict:
    """micro/macro/samples F1, subset accuracy and a per-label precision/recall/F1/support table (0/1 matrices)."""
    import numpy as np
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    y, yhat = np.array(gold, dtype=int).reshape(-1, len(labels)), np.array(pred, dtype=int).reshape(-1, len(labels))
    if not len(y):
        return {"micro_f1": 0.0, "macro_f1": 0.0, "samples_f1": 0.0, "subset_accuracy": 0.0, "per_class": {}}
    p, r, f, s = precision_recall_fscore_support(y, yhat, average=None, zero_division=0)
    # a row with no gold and no predicted label is a perfect answer (sklearn's samples F1 would count it 0)
    both_empty = (y.sum(1) == 0) & (yhat.sum(1) == 0)
    tp, sizes = (y & yhat).sum(1), y.sum(1) + yhat.sum(1)
    samples = np.where(both_empty, 1.0, 2 * tp / np.maximum(sizes, 1))
    return {
        "micro_f1": float(f1_score(y, yhat, average="micro", zero_division=0)),
        "macro_f1": float(f.mean()),
        "samples_f1": float(samples.mean()),
        "subset_accuracy": float((y == yhat).all(1).mean()),
        "per_class": {
            n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, n in enumerate(labels)
        },
    }


def pad_vectors(features: list[dict], pad_id: int) -> dict:
    """``pad_batch`` for features with a fixed-length ``targets`` vector per example (label sets, regression
    targets): sequences are padded, the vectors stacked as they are (batch, labels). The key is not ``labels``,
    which sequence padding (pad_batch, speed.bucketed) treats as per-token labels."""
    import torch

    from tunelab.data.collate import pad_batch

    batch = pad_batch([{k: v for k, v in f.items() if k != "targets"} for f in features], pad_id)
    if "targets" in features[0]:
        batch["targets"] = torch.tensor([f["targets"] for f in features], dtype=torch.float32)
    return batch


def count(batch: dict) -> int:
    return int(batch["targets"].shape[0])


def scores(model, features: list[dict], collate, batch_size: int = 64):
    """Sigmoid probabilities (examples, labels) in feature order (no grad, model's device)."""
    import torch

    device = next(model.parameters()).device
    out: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for idx in single._length_batches(features, list(range(len(features))), batch_size):
            batch = collate([{k: v for k, v in features[i].items() if k != "targets"} for i in idx])
            inputs = {k: v.to(device) for k, v in single.model_inputs(batch).items()}
            for i, p in zip(idx, torch.sigmoid(model(**inputs).logits.float()).cpu()):
                out[i] = p
    return torch.stack([out[i] for i in range(len(features))]) if features else torch.empty(0, 0)


def evaluator(features: list[dict], labels: list[str], collate, thresholds: Thresholds) -> Evaluator:
    """Dev/test metrics: score = label probabilities per example; summarize = thresholds (tuned or given),
    metrics at them, the same at 0.5 for comparison, and the mean BCE."""

    def score(model, indices: list[int]) -> list:
        sub = [features[i] for i in indices]
        return list(scores(model, sub, collate)) if sub else []

    def summarize(results: list) -> dict:
        import torch

        gold = [f["targets"] for f in features]
        probs = torch.stack(results) if results else torch.empty(0, len(labels))
        plist = probs.tolist()
        if thresholds.tune:
            thresholds.state["thresholds"] = tune_thresholds(plist, gold)
        cut = thresholds.values(len(labels))
        pred = [[int(x >= t) for x, t in zip(row, cut)] for row in plist]
        at_half = metrics(gold, [[int(x >= 0.5) for x in row] for row in plist], labels)
        bce = torch.nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), torch.tensor(gold)) if gold else 0.0
        return {
            **metrics(gold, pred, labels),
            "loss": float(bce),
            "thresholds": dict(zip(labels, cut)),
            "micro_f1_at_0.5": at_half["micro_f1"],
            "macro_f1_at_0.5": at_half["macro_f1"],
        }

    def answers(results: list) -> tuple[list, list]:
        """Gold and predicted label sets (lists of names), at the evaluation's thresholds."""
        cut = thresholds.values(len(labels))
        gold = [[n for n, y in zip(labels, f["targets"]) if y > 0.5] for f in features]
        return gold, [[n for n, x, t in zip(labels, p.tolist(), cut) if x >= t] for p in results]

    return Evaluator(len(features), score, summarize, answers)
