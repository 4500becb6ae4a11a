"""`tunelab fairness RUN`: counterfactual probes, EEC gaps, group metrics (classification); CrowS-Pairs (causal LM).

Results go to RUN/fairness.json (or ``out``) and into the run's report.md / report.html.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunelab import runs
from tunelab.errors import TunelabError
from tunelab.evaluation import report
from tunelab.evaluation.fairness import counterfactual, crows_pairs, eec, groups, terms

FILE = "fairness.json"


@dataclass
class Request:
    data: str | None = None  # texts for counterfactual probes / group metrics (default: the run's dev split)
    group_column: str | None = None  # column naming each row's group -> group metrics
    terms: str | None = None  # user term lists (YAML/JSON)
    only_user_terms: bool = False  # use only the user's lists
    categories: list[str] | None = None
    eec: str | None = None  # Equity Evaluation Corpus CSV
    crows_pairs: str | None = None  # CrowS-Pairs CSV
    positive: str | None = None  # the label whose probability is the sentiment score
    max_rows: int | None = None
    out: str | None = None


def run(run_dir: str, req: Request, log=print) -> dict:
    """Probe a run folder; a plain causal LM (alias, path or hub id, no run folder) can be probed with CrowS-Pairs."""
    if not (Path(run_dir) / "config.yaml").is_file() and req.crows_pairs:
        return _plain_model(run_dir, req, log)
    run_path = runs.check_run_dir(Path(run_dir))
    task = runs.read_config(run_path).task.name
    if task not in PROBES:
        raise TunelabError(
            f"{run_dir}: fairness probes cover classification runs (counterfactuals, EEC, groups) and "
            f"causal_lm runs (CrowS-Pairs); this is a {task} run"
        )
    return PROBES[task](run_path, req, log)


def _classifier(run_path: Path, req: Request, log) -> dict:
    """Counterfactual swaps, group metrics and EEC gaps from the run's (temperature-scaled) class probabilities."""
    if req.crows_pairs:
        raise TunelabError("--crows-pairs needs a causal_lm run (it compares sentence likelihoods)")
    loaded = runs.load_run(run_path)
    t = loaded.temperature
    positive = _positive(loaded.labels, req.positive, needed=bool(req.eec))
    lists = terms.select(terms.load(req.terms) if req.terms else None, req.categories, req.only_user_terms)
    ee = eec.read(req.eec) if req.eec else None  # bad inputs fail before any model work
    if req.group_column and not req.data:
        raise TunelabError("--group-column needs --data: a labelled file with that column")
    rows = _rows(loaded, req, log)
    result: dict = {"temperature": t}
    texts = [r.text for r in rows]
    probs = _probs(loaded, texts, [r.text_pair for r in rows])
    probes = counterfactual.build(texts, lists)
    log(f"counterfactual: {len(probes)} variants of {len({p['index'] for p in probes})} of {len(texts)} texts")
    pairs = [rows[p["index"]].text_pair for p in probes]
    vprobs = _probs(loaded, [p["text"] for p in probes], pairs) if probes else []
    cf = counterfactual.summarise(probs, vprobs, probes, loaded.labels, positive)
    result["counterfactual"] = {**cf, "texts": len(texts), "source": req.data or "the run's dev split"}
    if req.group_column:
        result["groups"] = _group_metrics(loaded, req, rows, probs, positive)
    if ee:
        scores = [p[positive] for p in _probs(loaded, [r["Sentence"] for r in ee], [None] * len(ee))]
        result["eec"] = {"positive": loaded.labels[positive], "sentences": len(ee), **eec.gaps(ee, scores)}
    return _save(run_path, req, result, log)


def _causal(run_path: Path, req: Request, log) -> dict:
    if not req.crows_pairs:
        raise TunelabError(
            f"{run_path}: a causal_lm run is probed with CrowS-Pairs: pass --crows-pairs FILE (crows_pairs_anonymized.csv)"
        )
    if req.eec or req.group_column or req.data:
        raise TunelabError(
            "--eec, --group-column and --data apply to classification runs; a causal_lm run takes --crows-pairs"
        )
    loaded = runs.load_run(run_path)
    rows = crows_pairs.read(req.crows_pairs)[: req.max_rows or None]
    log(f"CrowS-Pairs: scoring {len(rows)} sentence pairs")
    return _save(run_path, req, {"crows_pairs": crows_pairs.evaluate(loaded.model, loaded.tokenizer, rows)}, log)


# the probes per task (``cfg.task.name``): what "treats groups differently" means depends on what the model outputs
PROBES = {"classification": _classifier, "causal_lm": _causal}


def _plain_model(name: str, req: Request, log) -> dict:
    from tunelab.generation import target

    if not req.out:
        raise TunelabError(f"{name}: not a run folder; pass --out DIR for the results of a plain model")
    if req.eec or req.group_column or req.data:
        raise TunelabError("--eec, --group-column and --data need a classification run folder")
    tgt = target.load(name)
    rows = crows_pairs.read(req.crows_pairs)[: req.max_rows or None]
    log(f"CrowS-Pairs: scoring {len(rows)} sentence pairs with {name}")
    return _save(
        Path(req.out), req, {"model": name, "crows_pairs": crows_pairs.evaluate(tgt.model, tgt.tokenizer, rows)}, log
    )


def _save(run_path: Path, req: Request, result: dict, log) -> dict:
    folder = Path(req.out) if req.out else run_path
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    if folder == run_path:
        report.rebuild(run_path)
    log(f"fairness results: {folder / FILE}")
    return result


def _positive(labels: list[str], given: str | None, needed: bool) -> int | None:
    """Index of the positive label: given, or the obvious one of a binary task (1 / positive / pos)."""
    if given is not None:
        if given not in labels:
            raise TunelabError(f"--positive '{given}': not a label of this run; labels: {', '.join(labels)}")
        return labels.index(given)
    for name in ("1", "positive", "pos", "POSITIVE", "Positive"):
        if name in labels and len(labels) == 2:
            return labels.index(name)
    if needed:
        raise TunelabError(f"name the positive label with --positive (labels: {', '.join(labels)})")
    return None


def _rows(loaded, req: Request, log) -> list:
    from tunelab.recipes import finetune

    if req.data:
        rows = loaded.task.read(loaded.cfg, req.data, with_labels=bool(req.group_column)).rows
    else:
        rows = finetune.read_splits(loaded.cfg, loaded.task, log)["dev"]
    return rows[: req.max_rows] if req.max_rows else rows


def _group_metrics(loaded, req: Request, rows: list, probs: list[list[float]], positive: int | None) -> dict:
    from tunelab.data.sources import read_table

    d = loaded.cfg.data
    table = read_table(
        req.data,
        text_column=req.group_column,
        text_pair_column=None,
        label_column=d.label_column,
        format=d.format,
        has_header=d.has_header,
        on_error="raise",
    )
    group_of = {r.line: r.text for r in table.rows}
    missing = [r.line for r in rows if r.line not in group_of]
    if missing:
        raise TunelabError(f"{req.data}:{missing[0]}: no value in group column '{req.group_column}'")
    index = {n: i for i, n in enumerate(loaded.labels)}
    unknown = [r for r in rows if r.label not in index]
    if unknown:
        raise TunelabError(f"{req.data}:{unknown[0].line}: label '{unknown[0].label}' was not seen in training")
    y_pred = [max(range(len(p)), key=p.__getitem__) for p in probs]
    res = groups.metrics(
        [index[r.label] for r in rows], y_pred, [group_of[r.line] for r in rows], loaded.labels, positive
    )
    return {"column": req.group_column, **res}


def _probs(loaded, texts: list[str], pairs: list) -> list[list[float]]:
    """Class probabilities per text, in order and in label order, from the task's own ``predict`` on the run (which
    applies the run's fitted temperature)."""
    from tunelab.data.sources import Row

    rows = [Row(t, p, None, i + 1) for i, (t, p) in enumerate(zip(texts, pairs))]
    return [[out["probs"][name] for name in loaded.labels] for out in loaded.task.predict(loaded, rows)]
