"""Ranking metrics and scorers for ``tunelab recommend eval`` (leave-last-out, sampled candidates).

Every scorer gives one number per (user history, candidate item); the held-out item's rank among the user's
candidates gives HR@K (is it in the top K) and NDCG@K (1 / log2(rank + 2) when it is). Ties count against the held-out
item (its rank is the number of other candidates scored at least as high), so a constant scorer earns nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from tunelab.errors import DataError, TunelabError


def rank_of(scores: list[float], positive: int) -> int:
    """0-based rank of ``scores[positive]``: how many other candidates score at least as high."""
    target = scores[positive]
    return sum(1 for i, s in enumerate(scores) if i != positive and s >= target)


def hit_ratio(ranks: list[int], k: int) -> float:
    """Share of users whose held-out item is in their top ``k``."""
    return sum(r < k for r in ranks) / max(len(ranks), 1)


def ndcg(ranks: list[int], k: int) -> float:
    """Mean NDCG@k with one relevant item per user: 1 / log2(rank + 2) inside the top ``k``, else 0."""
    return sum(1 / math.log2(r + 2) for r in ranks if r < k) / max(len(ranks), 1)


def read_candidates(path: str) -> list[dict]:
    """``test.jsonl`` of ``tunelab recommend prepare``: history, positive item id and candidates per user."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found (write it with `tunelab recommend prepare`)")
    users = []
    for n, raw in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
        missing = {"user", "history", "positive", "candidates"} - set(obj) if isinstance(obj, dict) else {"an object"}
        if missing:
            raise DataError(f"{path}:{n}: expected keys user, history, positive, candidates; missing {sorted(missing)}")
        items = [c.get("item") for c in obj["candidates"]]
        if obj["positive"] not in items:
            raise DataError(f"{path}:{n}: the positive item {obj['positive']!r} is not among the candidates")
        users.append(obj)
    if not users:
        raise DataError(f"{path}: no users")
    return users


def evaluate(users: list[dict], score: Callable[[list[tuple[str, str]]], list[float]], k: int) -> dict:
    """HR@k and NDCG@k of ``score`` (a list of (history, item text) -> a score each) over every user."""
    pairs = [(u["history"], c["text"]) for u in users for c in u["candidates"]]
    scores = score(pairs)
    ranks, start = [], 0
    for u in users:
        n = len(u["candidates"])
        mine = scores[start : start + n]
        ranks.append(rank_of(mine, [c["item"] for c in u["candidates"]].index(u["positive"])))
        start += n
    return {f"hr@{k}": hit_ratio(ranks, k), f"ndcg@{k}": ndcg(ranks, k), "users": len(users), "candidates": n}


def popularity_scorer(path: str, users: list[dict]) -> Callable:
    """Score = the item's training interactions (``popularity.json``); items are matched by their text."""
    counts = json.loads(Path(path).read_text(encoding="utf-8"))
    by_text = {c["text"]: counts.get(c["item"], 0) for u in users for c in u["candidates"]}
    return lambda pairs: [float(by_text[item]) for _, item in pairs]


def embedding_scorer(model_name: str, max_length: int, batch_size: int = 64) -> Callable:
    """Cosine of mean-pooled embeddings from an (untuned) encoder: the untrained bi-encoder baseline."""
    from tunelab.models import load as model_load
    from tunelab.tasks import retrieval

    src = model_load.resolve(model_name)
    model, _ = model_load.load_model(src, "AutoModel")
    tok = model_load.load_tokenizer(src)
    model.eval()

    def score(pairs):
        return retrieval.pair_scores(model, tok, pairs, max_length, batch_size)

    return score


def run_scorer(run_dir: str, key: str) -> Callable:
    """Scores from a trained run's own ``predict`` on (history, item) pairs: ``key`` names the number in its output
    (``score`` for a retrieval run, ``probs.1`` for the probability of class 1 of a pair classifier).

    Each pair goes in the order the run was trained on: the files of ``tunelab recommend prepare`` have the columns
    ``history`` and ``item``, so a run trained with ``data.text_column: item`` gets the candidate as its text and the
    history as its text pair; any other run gets the history first."""
    from tunelab import runs
    from tunelab.tasks import TASKS

    run = runs.load_run(run_dir)
    task = TASKS[run.cfg.task.name]
    path = key.split(".")
    item_first = run.cfg.data.text_column == "item"

    def pick(out: dict, n: int) -> float:
        value = out
        for part in path:
            if not isinstance(value, dict) or part not in value:
                raise TunelabError(f"--score {key}: not in {run_dir}'s predictions (their keys: {', '.join(out)})")
            value = value[part]
        return float(value)

    def score(pairs):
        ordered = [(i, h) if item_first else (h, i) for h, i in pairs]
        lines = [json.dumps({"text": a, "text_pair": b}) for a, b in ordered]
        outs = task.predict(run, task.parse_inputs(lines, "candidates"))
        return [pick(o, n) for n, o in enumerate(outs)]

    return score
