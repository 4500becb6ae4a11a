"""HR@K / NDCG@K by hand, pessimistic ties, and `tunelab recommend eval` with popularity and a tiny bi-encoder."""

from __future__ import annotations

import json
import math

import pytest

from tunelab import cli
from tunelab.errors import DataError
from tunelab.recommend import ranking


def test_rank_counts_ties_against_the_positive():
    assert ranking.rank_of([0.1, 0.9, 0.5], 1) == 0
    assert ranking.rank_of([0.5, 0.9, 0.5], 0) == 2  # the tie with index 2 counts against it
    assert ranking.rank_of([1.0, 1.0, 1.0], 1) == 2  # a constant scorer earns nothing


def test_hit_ratio_and_ndcg_hand_computed():
    ranks = [0, 1, 5, 12]
    assert ranking.hit_ratio(ranks, 10) == 0.75
    assert ranking.ndcg(ranks, 10) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(7)) / 4)
    assert ranking.hit_ratio(ranks, 1) == 0.25 and ranking.ndcg(ranks, 1) == 0.25


def users_file(tmp_path, users):
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(u) + "\n" for u in users), encoding="utf-8")
    return path


def cand(*items):
    return [{"item": i, "text": f"Film {i}"} for i in items]


def test_popularity_eval_command(tmp_path, capsys):
    users = [
        {"user": "1", "history": "Film 9", "positive": "a", "candidates": cand("b", "a", "c")},
        {"user": "2", "history": "Film 8", "positive": "c", "candidates": cand("a", "b", "c")},
    ]
    path = users_file(tmp_path, users)
    (tmp_path / "pop.json").write_text(json.dumps({"a": 5, "b": 1, "c": 3}), encoding="utf-8")
    out = tmp_path / "hr.json"
    argv = ["recommend", "eval", str(path), "--popularity", str(tmp_path / "pop.json"), "--k", "1", "--json", str(out)]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["hr@1"] == 0.5 and result["ndcg@1"] == 0.5 and result["users"] == 2  # user 2's "c" ranks 2nd
    assert json.loads(out.read_text(encoding="utf-8")) == result
    assert cli.main(argv) == 2 and "already exists" in capsys.readouterr().err  # never overwritten


@pytest.mark.parametrize(
    "line, message",
    [
        ("{", r"test.jsonl:1: not JSON"),
        ('{"user": "1"}', r"test.jsonl:1: expected keys .* missing \['candidates', 'history', 'positive'\]"),
        (
            '{"user": "1", "history": "h", "positive": "z", "candidates": [{"item": "a", "text": "A"}]}',
            r"test.jsonl:1: the positive item 'z' is not among the candidates",
        ),
    ],
)
def test_bad_candidates_file(tmp_path, line, message):
    path = tmp_path / "test.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        ranking.read_candidates(str(path))


def test_a_run_ranks_by_the_named_number_of_its_predictions(tmp_path, tiny_cls_run, capsys):
    """A pair classifier ranks by probs.1; a key its predictions lack is an error naming the keys they have.
    (Untuned embeddings and a retrieval run are exercised end to end by tests/apps/test_recipes.py.)"""
    users = [
        {"user": str(n), "history": "good fun movie", "positive": "a", "candidates": cand("a", "b", "c", "d")}
        for n in range(3)
    ]
    path = users_file(tmp_path, users)
    assert cli.main(["recommend", "eval", str(path), "--run", str(tiny_cls_run)]) == 2
    err = capsys.readouterr().err
    assert "--score score: not in" in err and "probs" in err
    assert cli.main(["recommend", "eval", str(path), "--run", str(tiny_cls_run), "--score", "probs.1", "--k", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["users"] == 3 and result["candidates"] == 4 and 0 <= result["ndcg@2"] <= result["hr@2"] <= 1


def test_a_run_gets_each_pair_in_the_order_it_was_trained_on(tiny_cls_run, monkeypatch):
    """A run trained with ``data.text_column: item`` (candidate first, history as the text pair) is sent
    (item, history); any other run (history, item)."""
    from tunelab import runs
    from tunelab.tasks import TASKS

    sent = []
    parse = TASKS["classification"].parse_inputs
    monkeypatch.setattr(
        TASKS["classification"], "parse_inputs", lambda lines, src: sent.append(lines) or parse(lines, src)
    )
    pairs = [("good fun movie", "bad film"), ("dull", "great")]
    ranking.run_scorer(str(tiny_cls_run), "probs.1")(pairs)
    assert [json.loads(x) for x in sent[-1]] == [{"text": h, "text_pair": i} for h, i in pairs]

    load = runs.load_run

    def item_first(run_dir):
        run = load(run_dir)
        data = run.cfg.data.model_copy(update={"text_column": "item", "text_pair_column": "history"})
        run.cfg = run.cfg.model_copy(update={"data": data})
        return run

    monkeypatch.setattr(runs, "load_run", item_first)
    scores = ranking.run_scorer(str(tiny_cls_run), "probs.1")(pairs)
    assert [json.loads(x) for x in sent[-1]] == [{"text": i, "text_pair": h} for h, i in pairs]
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
