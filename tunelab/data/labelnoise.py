"""Likely label errors by confident learning (cleanlab) on out-of-fold probabilities.

The probabilities come from a fast model: mean-pooled, L2-normalised sentence embeddings of a packaged
encoder (minilm-l6 by default) and a logistic regression, each row scored by a model that never saw it
(k-fold cross-validation). cleanlab then ranks the rows by the probability of their given label and estimates
how many of them are wrong (or, with the ``prune`` cutoff, filters them with ``find_label_issues``).
"""

from __future__ import annotations

import json

import numpy as np


def embed(
    texts: list[str], model_name: str = "minilm-l6", batch_size: int = 64, max_length: int = 128, log=None
) -> np.ndarray:
    """Sentence embeddings (rows, hidden): mean of the last hidden states over real tokens, L2-normalised."""
    import torch

    from tunelab.models import load as model_load

    src = model_load.resolve(model_name)
    tokenizer = model_load.load_tokenizer(src)
    model, _ = model_load.load_model(src, "AutoModel")
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: little padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            hidden = model(**enc).last_hidden_state  # (batch, seq, hidden)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)  # (batch, hidden)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
            if log and (start // batch_size) % 50 == 49:
                log(f"embedded {start + len(idx)} of {len(texts)} texts")
    return out


def out_of_fold_probs(
    features: np.ndarray, labels: list[int], folds: int = 5, seed: int = 0, c: float = 1.0
) -> np.ndarray:
    """(rows, classes) class probabilities, each row from a logistic regression trained on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(labels)
    smallest = int(np.bincount(y).min())
    k = max(2, min(folds, smallest))
    clf = LogisticRegression(C=c, max_iter=2000)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return cross_val_predict(clf, features, y, cv=cv, method="predict_proba")


def label_issues(labels: list[int], probs: np.ndarray, cutoff: str = "estimate") -> list[int]:
    """Indices of likely label errors, most likely first.

    ``estimate``: rows ranked by cleanlab's label-quality score (self-confidence, the out-of-fold probability of
    the given label), and as many flagged as cleanlab estimates there are issues (``num_label_issues``, counted on
    the off-diagonal of the calibrated confident joint). ``prune``: cleanlab's ``find_label_issues`` (prune by
    noise rate), ranked by self-confidence.
    """
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.asarray(labels)
    if cutoff == "prune":
        ranked = find_label_issues(
            y, probs, filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence"
        )
        return [int(i) for i in ranked]
    quality = get_label_quality_scores(y, probs, method="self_confidence")  # (rows,) low = likely wrong
    n = int(num_label_issues(y, probs, estimation_method="off_diagonal_calibrated"))
    return [int(i) for i in np.argsort(quality, kind="stable")[:n]]


def finetune_probs(
    texts: list[str],
    labels: list[int],
    names: list[str],
    model_name: str = "minilm-l6",
    folds: int = 5,
    seed: int = 0,
    log=None,
) -> np.ndarray:
    """(rows, classes) out-of-fold probabilities from a short tunelab fine-tune per fold (full, 2 epochs, max_length 64).

    Slower than the embedding probe (one training run per fold) and usually much more accurate, so fewer correct rows
    are flagged. Each fold trains with ``tunelab train``'s own recipe in a temporary run folder.
    """
    import tempfile

    from sklearn.model_selection import StratifiedKFold

    from tunelab import config as config_mod
    from tunelab import runs
    from tunelab.recipes import finetune

    y = np.asarray(labels)
    k = max(2, min(folds, int(np.bincount(y).min())))
    probs = np.zeros((len(texts), len(names)))
    with tempfile.TemporaryDirectory(prefix="tunelab-probe-") as tmp:
        for fold, (fit, held) in enumerate(
            StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        ):
            path = f"{tmp}/fold{fold}.jsonl"
            with open(path, "w", encoding="utf-8") as fh:
                for i in fit:
                    fh.write(json.dumps({"text": texts[i], "label": names[y[i]]}) + "\n")
            cfg = config_mod.load(
                None,
                [
                    "task=classification",
                    f"output_dir={tmp}/run{fold}",
                    f"model.name={model_name}",
                    "model.max_length=64",
                    f"data.train={path}",
                    "data.dev_fraction=0.05",
                    "method=full",
                    "train.epochs=2",
                    "train.batch_size=32",
                    f"train.seed={seed}",
                ],
            )
            if log:
                log(f"label-error probe: fine-tuning fold {fold + 1} of {k} on {len(fit)} rows")
            finetune.run(cfg, quiet=True, log=lambda m: None)
            run = runs.load_run(f"{tmp}/run{fold}")
            inputs = run.task.parse_inputs([json.dumps({"text": texts[i]}) for i in held], f"fold {fold + 1}")
            probs[held] = [[o["probs"][n] for n in names] for o in run.task.predict(run, inputs)]
    return probs


def find(
    texts: list[str],
    labels: list[str],
    model_name: str = "minilm-l6",
    folds: int = 5,
    seed: int = 0,
    log=None,
    probe: str = "embedding",
    cutoff: str = "estimate",
) -> tuple[list[int], np.ndarray, list[str]]:
    """(likely label errors ranked, out-of-fold probabilities, class names) for labelled texts.

    ``probe``: ``embedding`` (logistic regression on sentence embeddings, fast) or ``finetune`` (a short fine-tune
    of ``model_name`` per fold, slower and more accurate). ``cutoff``: how many are flagged (see ``label_issues``).
    """
    names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    y = [index[label] for label in labels]
    if probe == "finetune":
        probs = finetune_probs(texts, y, names, model_name, folds, seed, log)
    else:
        probs = out_of_fold_probs(embed(texts, model_name, log=log), y, folds, seed)
    return label_issues(y, probs, cutoff), probs, names
