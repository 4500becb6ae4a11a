"""Likely label errors by confident learning (cleanlab) on out-of-fold probabilities.

The probabilities come from fast models: mean-pooled, L2-normalised hidden states of one or more packaged models
(an encoder such as minilm-l6, a small causal LM such as smollm2-135m), one logistic regression per model with its
regularisation chosen by cross-validation, their probabilities averaged; each row is scored by models that
never saw it (k-fold cross-validation). cleanlab's confident joint then estimates the noise matrix, and a row is
flagged when it is more likely mislabelled than not (or by cleanlab's own counts, with the other cutoffs).
"""

from __future__ import annotations

import json

import numpy as np


def _weights_stamp(path: str) -> list:
    """What identifies a model's weights for the embedding cache: each weight file's name, size and mtime."""
    from pathlib import Path

    root = Path(path)
    if not root.is_dir():
        return [path]  # a hub id (its revision is in the key too)
    return sorted(
        (f.name, f.stat().st_size, f.stat().st_mtime_ns)
        for f in root.iterdir()
        if f.suffix in (".safetensors", ".bin", ".gguf", ".pt")
    )


def embed(
    texts: list[str],
    model_name: str = "minilm-l6",
    batch_size: int = 64,
    max_length: int = 128,
    log=None,
    layer: int | None = None,
    cache: bool = True,
) -> np.ndarray:
    """Text embeddings (rows, hidden): the mean of one layer's hidden states over real tokens, L2-normalised.

    Works for encoders (minilm-l6) and decoder-only LMs (smollm2-135m: padding on the right, so a row's states do
    not depend on its batch). ``layer`` indexes ``hidden_states`` (-1: the last layer, 0: the embeddings); None:
    ``default_layer`` (the last layer of an encoder, the middle layer of a causal LM).
    Cached on disk (``tunelab.data.cache``) by the texts, the tokenizer, the weights and the options, so a second
    audit of the same file does not run the model again.
    """
    from tunelab.data import cache as cache_mod
    from tunelab.models import load as model_load

    src = model_load.resolve(model_name)
    tokenizer = model_load.load_tokenizer(src)
    weights = model_load.converted_gguf(src) if src.gguf_file else src.path
    if layer is None:
        layer = default_layer(model_load.load_config(weights))
    key = cache_mod.key(
        texts,
        tokenizer,
        kind="embeddings",
        model=str(weights),
        revision=src.revision,
        weights=_weights_stamp(str(weights)),
        max_length=max_length,
        layer=layer,
        pooling="mean-l2",
    )
    return cache_mod.cached(key, lambda: _pooled(texts, src, tokenizer, batch_size, max_length, layer, log), cache, log)


def default_layer(config) -> int:
    """The ``hidden_states`` index pooled by default: -1 (the last layer) for encoders; for decoder-only LMs the
    middle layer, whose states a linear probe reads better than the last layer's, which are shaped for predicting
    the next token (measured on 4,000 SST-2 rows with smollm2-135m: out-of-fold accuracy 0.743 from layer 15 of 30,
    0.712 from the last; bench/label_noise_probes.py)."""
    kinds = config.architectures or []
    if any(k.endswith(("ForCausalLM", "LMHeadModel")) for k in kinds):
        return config.num_hidden_layers // 2
    return -1


def _pooled(texts, src, tokenizer, batch_size, max_length, layer, log) -> np.ndarray:
    import torch

    from tunelab.models import load as model_load

    model, _ = model_load.load_model(src, "AutoModel")
    model.eval()
    tokenizer.padding_side = "right"  # causal LMs: a row's hidden states then do not depend on its padding
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: little padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            res = model(**enc, output_hidden_states=layer != -1)
            hidden = res.last_hidden_state if layer == -1 else res.hidden_states[layer]  # (batch, seq, hidden)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)  # (batch, hidden)
            out[idx] = torch.nn.functional.normalize(pooled.float(), dim=-1).numpy()
            if log and (start // batch_size) % 50 == 49:
                log(f"embedded {start + len(idx)} of {len(texts)} texts")
    return out


C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)  # inverse regularisation strengths tried by the CV


def _probe(c: float):
    """Standardised features -> logistic regression with inverse regularisation strength ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(C=c, max_iter=2000))])


def choose_c(x: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 3) -> float:
    """The C of ``C_GRID`` with the best cross-validated log-loss on the given labels (one value for all folds:
    nesting this search inside every out-of-fold split would cost five times more for one scalar)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    search = GridSearchCV(_probe(1.0), {"lr__C": list(C_GRID)}, cv=cv, scoring="neg_log_loss", refit=False)
    return float(search.fit(x, y).best_params_["lr__C"])


def out_of_fold_probs(features, labels: list[int], folds: int = 5, seed: int = 0, c: float | None = None) -> np.ndarray:
    """(rows, classes) class probabilities, each row from probes trained on the other folds.

    ``features``: one (rows, dim) array or a list of them (one per embedding model): one logistic regression per
    array on standardised features, their probabilities averaged (an ensemble). ``c``: the regularisation strength;
    None chooses it per array by a 3-fold CV on log-loss (``choose_c``), so the probabilities are neither over- nor
    under-confident by a guess (the posterior cutoff reads them as probabilities).
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(labels)
    smallest = int(np.bincount(y).min())
    k = max(2, min(folds, smallest))
    sets = [features] if isinstance(features, np.ndarray) else list(features)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    probs = []
    for x in sets:
        chosen = c if c is not None else choose_c(x, y, seed, max(2, min(3, smallest)))
        probs.append(cross_val_predict(_probe(chosen), x, y, cv=cv, method="predict_proba"))
    return np.mean(probs, axis=0)


CUTOFFS = ("posterior", "calibrated", "estimate", "prune")


def temperature(labels, probs: np.ndarray) -> float:
    """The temperature t for which softmax(log(probs) / t) best fits the given labels (least negative
    log-likelihood; evaluation.calibration's fit, within its range): out-of-fold probabilities averaged over probes
    come out too flat, a single probe's can be too sharp; after scaling they estimate P(given label | text)."""
    from tunelab.evaluation.calibration import fit_temperature

    return fit_temperature(np.log(np.clip(probs, 1e-12, 1.0)), np.asarray(labels))


def calibrate(labels, probs: np.ndarray) -> np.ndarray:
    """(rows, classes) ``probs`` temperature-scaled to the given labels (``temperature``)."""
    z = np.log(np.clip(probs, 1e-12, 1.0)) / temperature(labels, probs)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def wrong_label_probability(labels: list[int], probs: np.ndarray, invert: bool = False) -> np.ndarray:
    """(rows,) the estimated probability that each row's given label is wrong (Bayes' rule, cleanlab's noise matrix).

    cleanlab estimates the noise matrix ``T[i, j] = P(given i | true j)`` from the confident joint; with the probe's
    probabilities ``p`` taken as ``P(true | x)``, ``P(given label right | x, given g) = T[g, g] p_g / sum_j T[g, j] p_j``.
    ``invert`` first solves ``p = T @ P(true | x)`` for ``P(true | x)`` (the probe learnt the noisy labels, so in
    theory its probabilities are already mixed by ``T``), clipped to >= 0 and renormalised. That is unstable when
    ``T`` is estimated near singular (a weak probe makes cleanlab count its own mistakes as noise: on 60 SST-2 rows
    it flagged 38 rows, none of them flipped), so the default takes ``p`` as it is, which flags fewer rows.
    """
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities

    y = np.asarray(labels)
    _, noise, _, _ = estimate_py_and_noise_matrices_from_probabilities(y, probs)  # (classes, classes)
    true = probs
    if invert:
        true = np.clip(np.linalg.solve(noise, probs.T).T, 0.0, None)  # (rows, classes)
        true = true / np.clip(true.sum(1, keepdims=True), 1e-12, None)
    given = true @ noise.T  # (rows, classes): P(given i | x)
    rows = np.arange(len(y))
    right = noise[y, y] * true[rows, y] / np.clip(given[rows, y], 1e-12, None)
    return 1.0 - np.clip(right, 0.0, 1.0)


def invertible(labels, probs: np.ndarray) -> bool:
    """Whether cleanlab's noise matrix from these probabilities can be undone: every class's given labels are
    estimated right more often than wrong (T[i, i] > 0.5). A weak probe (few rows) makes cleanlab count its own
    mistakes as noise, and undoing such a matrix flags rows at random (the first 60 SST-2 rows, 6 flipped, minilm-l6 probe:
    T[0, 0] = 0.17, 20 flagged, 3 of them flipped); ``calibrated`` then keeps ``posterior``'s list."""
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities

    _, noise, _, _ = estimate_py_and_noise_matrices_from_probabilities(np.asarray(labels), probs)
    return bool(np.diag(noise).min() > 0.5)


def label_issues(labels: list[int], probs: np.ndarray, cutoff: str = "posterior") -> list[int]:
    """Indices of likely label errors, most likely first.

    ``posterior`` (default): rows whose estimated probability of a wrong label (``wrong_label_probability``) is at
    least 0.5, i.e. rows more likely wrong than right, ranked by that probability. ``calibrated``: the same rule
    done in full: the probabilities are first temperature-scaled to the given labels (``calibrate``: they then
    estimate P(given | text)), the noise matrix is undone to estimate P(true | text) (``invert``), and Bayes' rule
    flags the rows more likely wrong than right; it flags about as many rows as it estimates are wrong, where
    ``posterior`` flags the surest. When the noise matrix cannot be undone (``invertible``), ``posterior``'s list. ``estimate``: rows ranked by
    cleanlab's label-quality score (self-confidence, the out-of-fold probability of the given label), and as many
    flagged as cleanlab estimates there are issues (``num_label_issues``, counted on the off-diagonal of the
    calibrated confident joint). ``prune``: cleanlab's ``find_label_issues`` (prune by noise rate), ranked by
    self-confidence.
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
    if cutoff in ("posterior", "calibrated"):
        wrong = wrong_label_probability(y, probs)
        if cutoff == "calibrated" and invertible(y, calibrate(y, probs)):
            wrong = wrong_label_probability(y, calibrate(y, probs), invert=True)
        order = np.argsort(-wrong, kind="stable")
        return [int(i) for i in order if wrong[i] >= 0.5]
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
                    "train.lr=5e-5",
                    "train.eval_every=1000000",  # one evaluation, after the last step: the probe is the final model
                    "train.keep_checkpoints=none",  # model/ is all the fold needs
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


def model_list(label_model: str) -> list[str]:
    """``--label-model``'s comma-separated model names (aliases, folders or hub ids), in order."""
    return [m.strip() for m in label_model.split(",") if m.strip()]


PROBES = ("embedding", "finetune")


def probe_list(label_probe: str) -> list[str]:
    """``--label-probe``'s comma-separated probes (each of ``PROBES``), in order."""
    return [p.strip() for p in label_probe.split(",") if p.strip()]


def describe_probe(label_probe: str) -> str:
    """One line for the audit report: what gave the probabilities."""
    parts = {
        "embedding": "logistic regression on mean-pooled hidden states (C by 3-fold CV; averaged over the models)",
        "finetune": "the first model fine-tuned per fold",
    }
    probes = probe_list(label_probe)
    text = " + ".join(parts[p] for p in probes)
    return f"{text} (probabilities averaged)" if len(probes) > 1 else text


def find(
    texts: list[str],
    labels: list[str],
    model_name: str = "minilm-l6",
    folds: int = 5,
    seed: int = 0,
    log=None,
    probe: str = "embedding",
    cutoff: str = "posterior",
) -> tuple[list[int], np.ndarray, list[str]]:
    """(likely label errors ranked, out-of-fold probabilities, class names) for labelled texts.

    ``probe``: comma-separated, each of ``embedding`` (logistic regression on the mean-pooled hidden states of each
    model in the comma-separated ``model_name``, probabilities averaged over the models; fast) and ``finetune`` (a
    short fine-tune of the first model of ``model_name`` per fold; slower); with both, their probabilities are
    averaged (the same folds). ``cutoff``: how many are flagged (see ``label_issues``).
    """
    names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    y = [index[label] for label in labels]
    models = model_list(model_name)
    probs = []
    for part in probe_list(probe):
        if part == "finetune":
            probs.append(finetune_probs(texts, y, names, models[0], folds, seed, log))
        else:
            probs.append(out_of_fold_probs([embed(texts, m, log=log) for m in models], y, folds, seed))
    mean = np.mean(probs, axis=0)  # (rows, classes)
    return label_issues(y, mean, cutoff), mean, names
