"""Regression: one or more real-valued targets per text (or text pair: STS-style similarity).

The label column holds a number (a rating, a score), or a JSON list of numbers for several targets. Targets are
standardised with the training rows' mean and standard deviation (``task.normalize``); the scaling is saved with
the run (task_state.json) so ``eval``, ``predict`` and ``serve`` answer on the original scale.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Literal

from pydantic import Field

from tunelab.data.sources import Row
from tunelab.errors import DataError, TunelabError
from tunelab.schema import Strict
from tunelab.tasks import classification as single
from tunelab.tasks.base import Prepared, Table, Task
from tunelab.tasks.multi_label import count, pad_vectors
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.objective import Objective


class Config(Strict):
    """The ``task:`` section of regression."""

    name: Literal["regression"] = "regression"
    loss: Literal["mse", "huber"] = Field(
        "mse", description="Training loss on the (standardised) targets: mse, or huber (less swayed by outliers)."
    )
    huber_delta: float = Field(
        1.0, gt=0, description="Huber loss: where it turns from squared to linear (standardised units)."
    )
    normalize: bool = Field(
        True, description="Standardise targets with the training mean and standard deviation (saved with the run)."
    )
    target_names: list[str] | None = Field(
        None,
        description="Names of the targets in predictions and metrics; null = target (one) or target_0, target_1, ...",
    )


class Regression(Task):
    """Real-valued targets from a sequence-classification head with one output per target."""

    name = "regression"
    Config = Config
    auto_class = "AutoModelForSequenceClassification"
    row_kind = "text"
    metrics = (
        Metric("mse", False, "mean squared error on the original scale (averaged over targets)"),
        Metric("mae", False, "mean absolute error on the original scale"),
        Metric("pearson", True, "Pearson correlation of predictions and targets (0 when either is constant)"),
        Metric("spearman", True, "Spearman rank correlation of predictions and targets (0 when either is constant)"),
    )

    def check(self, cfg) -> None:
        names = cfg.task.target_names
        if names is not None and (not names or len(set(names)) != len(names)):
            raise ValueError("task.target_names: expected distinct names, one per target")

    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        table = single.read_text_table(cfg, path, with_labels, "number")
        width, rows, skipped = None, [], list(table.skipped)
        for r in table.rows:  # every row has as many targets as the first
            n = len(targets(r.label)) if r.label is not None else None
            width = width or n
            if n is not None and n != width:
                why = f"expected {width} target(s) as in the first row, found {n}"
                if cfg.data.on_error == "raise":
                    raise DataError(f"{path}:{r.line}: {why}")
                skipped.append((r.line, why))
                continue
            rows.append(r)
        return Table(rows, sorted(skipped))

    def label_space(self, rows: list[Row], source: str) -> list[str]:
        return [f"{n}" for n in range(len(targets(rows[0].label)))] if rows else ["0"]

    def check_rows(self, cfg, rows: list[Row], source: str, log) -> None:
        names = cfg.task.target_names
        if names is not None and rows and len(names) != len(targets(rows[0].label)):
            raise DataError(
                f"{source}:{rows[0].line}: task.target_names names {len(names)} targets, the rows hold {len(targets(rows[0].label))}"
            )
        if len({r.label for r in rows}) < 2:
            raise DataError(f"{source}: every training target is the same value; there is nothing to learn")

    def stratify_key(self, row: Row):
        return None

    def model_kwargs(self, labels: list[str] | None) -> dict:
        return {"num_labels": len(labels), "problem_type": "regression"} if labels is not None else {}

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        from tunelab.data import cache

        state = scaling([targets(r.label) for r in splits["train"]]) if cfg.task.normalize else identity(len(labels))
        feats = {}
        for split, rows in splits.items():
            key = cache.key(rows, tokenizer, task=self.name, labels=state, max_length=cfg.model.max_length)
            build = partial(encode, rows, tokenizer, state, cfg.model.max_length)
            feats[split] = cache.cached(key, build, cfg.speed.cache, log)
        collate = partial(pad_vectors, pad_id=tokenizer.pad_token_id)
        names = target_names(cfg, labels)
        dev = evaluator(feats["dev"], state, collate, names)
        test = evaluator(feats["test"], state, collate, names) if "test" in feats else None
        objective = Objective(self.forward, partial(loss, kind=(cfg.task.loss, cfg.task.huber_delta)), count)
        return Prepared(feats, collate, objective, dev, dev, test, task_state=state)

    def forward(self, model, batch: dict) -> dict:
        return {"logits": model(**single.model_inputs(batch)).logits}  # (batch, targets)

    def loss(self, outputs: dict, batch: dict):
        return loss(outputs, batch)

    def item_logits(self, outputs: dict, batch: dict):
        # a softmax divergence over classes has no meaning for real-valued targets
        raise TunelabError(
            f"task {self.name}: distillation (soft targets over classes) is not supported for real-valued targets"
        )

    def evaluator(self, run, rows: list[Row], source: str, log) -> Evaluator:
        state = run.task_state or identity(len(run.labels))
        feats = encode(rows, run.tokenizer, state, run.cfg.model.max_length)
        collate = partial(pad_vectors, pad_id=run.tokenizer.pad_token_id)
        return evaluator(feats, state, collate, target_names(run.cfg, run.labels))

    def parse_inputs(self, lines, source: str) -> list[Row]:
        return single.parse_lines(lines, source)

    def predict(self, run, inputs: list[Row]) -> list[dict]:
        state = run.task_state or identity(len(run.labels))
        unlabelled = [Row(r.text, r.text_pair, None, r.line) for r in inputs]
        feats = encode(unlabelled, run.tokenizer, state, run.cfg.model.max_length)
        values = outputs(run.model, feats, partial(pad_vectors, pad_id=run.tokenizer.pad_token_id), state)
        names = target_names(run.cfg, run.labels)
        return [
            {"text": r.text, **({"text_pair": r.text_pair} if r.text_pair is not None else {}), **answer(v, names)}
            for r, v in zip(inputs, values)
        ]

    def reference(self, row: Row) -> tuple[Row, dict]:
        return Row(row.text, row.text_pair, None, row.line), answer(targets(row.label), None)

    def prompt_template(self, run) -> None:
        return None

    def prompts(self, rows: list) -> list:
        return []


# ---------------------------------------------------------------- pure parts


def targets(cell: str) -> list[float]:
    """The targets of a label cell as the reader leaves it: a number's text, or a JSON list of numbers."""
    value = json.loads(cell)
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def target_names(cfg, labels: list[str]) -> list[str]:
    if cfg.task.target_names is not None:
        return list(cfg.task.target_names)
    return ["target"] if len(labels) == 1 else [f"target_{i}" for i in range(len(labels))]


def answer(values: list[float], names: list[str] | None) -> dict:
    """One target: {"value": v}; several: {"values": {name: v}} (names None: target_0, ...)."""
    if len(values) == 1:
        return {"value": round(float(values[0]), 6)}
    names = names or [f"target_{i}" for i in range(len(values))]
    return {"values": {n: round(float(v), 6) for n, v in zip(names, values)}}


def scaling(rows: list[list[float]]) -> dict:
    """Per-target mean and standard deviation (1 where a target is constant)."""
    import numpy as np

    y = np.array(rows, dtype=float)
    std = y.std(0)
    return {"mean": y.mean(0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def identity(n: int) -> dict:
    return {"mean": [0.0] * n, "std": [1.0] * n}


def encode(rows: list[Row], tokenizer, state: dict, max_length: int) -> list[dict]:
    """Tokenize rows (no padding); targets standardised with ``state``."""
    features = single.tokenize_texts(rows, tokenizer, max_length)
    for f, r in zip(features, rows):
        if r.label is not None:
            f["targets"] = [(y - m) / s for y, m, s in zip(targets(r.label), state["mean"], state["std"])]
    return features


def loss(outputs: dict, batch: dict, kind: tuple[str, float] = ("mse", 1.0)):
    """(sum over rows of the per-row mean squared or Huber error over targets, rows)."""
    import torch.nn.functional as F

    y = batch["targets"].float()  # (batch, targets)
    pred = outputs["logits"].float().reshape(y.shape)
    name, delta = kind
    per = (
        F.mse_loss(pred, y, reduction="none") if name == "mse" else F.huber_loss(pred, y, reduction="none", delta=delta)
    )
    return per.mean(-1).sum(), int(y.shape[0])


def outputs(model, features: list[dict], collate, state: dict) -> list[list[float]]:
    """Predictions on the original scale, in feature order."""
    import torch

    device = next(model.parameters()).device
    mean, std = torch.tensor(state["mean"]), torch.tensor(state["std"])
    out: dict[int, list[float]] = {}
    with torch.no_grad():
        for idx in single._length_batches(features, list(range(len(features))), 64):
            batch = collate([{k: v for k, v in features[i].items() if k != "targets"} for i in idx])
            inputs = {k: v.to(device) for k, v in single.model_inputs(batch).items()}
            z = model(**inputs).logits.float().cpu()  # (batch, targets)
            for i, row in zip(idx, (z * std + mean).tolist()):
                out[i] = row
    return [out[i] for i in range(len(features))]


def metrics(gold: list[list[float]], pred: list[list[float]], names: list[str]) -> dict:
    """MSE, RMSE, MAE, Pearson and Spearman per target and averaged over targets."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    y, p = np.array(gold, dtype=float), np.array(pred, dtype=float)
    per = {}
    for j, name in enumerate(names):
        a, b = y[:, j], p[:, j]
        varies = len(a) > 1 and a.std() > 0 and b.std() > 0
        per[name] = {
            "mse": float(((a - b) ** 2).mean()) if len(a) else 0.0,
            "mae": float(np.abs(a - b).mean()) if len(a) else 0.0,
            "pearson": float(pearsonr(a, b)[0]) if varies else 0.0,
            "spearman": float(spearmanr(a, b)[0]) if varies else 0.0,
        }
    avg = {k: float(np.mean([m[k] for m in per.values()])) for k in ("mse", "mae", "pearson", "spearman")}
    return {**avg, "rmse": float(np.sqrt(avg["mse"])), **({"per_target": per} if len(names) > 1 else {})}


def evaluator(features: list[dict], state: dict, collate, names: list[str]) -> Evaluator:
    """Dev/test metrics on the original scale (predictions and targets un-standardised)."""

    def score(model, indices: list[int]) -> list:
        return outputs(model, [features[i] for i in indices], collate, state)

    def answers(results: list) -> tuple[list, list]:
        """Gold and predicted values on the original scale (a number per item; a list with several targets)."""
        gold = [[z * s + m for z, m, s in zip(f["targets"], state["mean"], state["std"])] for f in features]
        if len(names) == 1:
            return [g[0] for g in gold], [p[0] for p in results]
        return gold, [list(p) for p in results]

    def summarize(results: list) -> dict:
        gold = [[z * s + m for z, m, s in zip(f["targets"], state["mean"], state["std"])] for f in features]
        return metrics(gold, results, names)

    return Evaluator(len(features), score, summarize, answers)
