"""tunelab recommend prepare: leave-last-out split, history text, sampled negatives, and file:line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab import cli
from tunelab.errors import DataError
from tunelab.recommend import interactions
from tunelab.recommend.interactions import Options

ITEMS = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" + "".join(
    f"{i}\tFilm {i}\t199{i % 10}\tDrama\n" for i in range(1, 31)
)


def write(tmp: Path, inter: str, items: str = ITEMS) -> tuple[str, str]:
    (tmp / "log.inter").write_text(inter, encoding="utf-8")
    (tmp / "movies.item").write_text(items, encoding="utf-8")
    return str(tmp / "log.inter"), str(tmp / "movies.item")


def log_of(events: list[tuple[str, str, int]]) -> str:
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    return head + "".join(f"{u}\t{i}\t4\t{t}\n" for u, i, t in events)


def test_leave_last_out_by_time_with_history_most_recent_first(tmp_path):
    # user 1 watched 5, 3, 9, 7 (timestamps out of file order); user 2 has two items only: skipped
    log, items = write(
        tmp_path, log_of([("1", "9", 30), ("1", "5", 10), ("1", "7", 40), ("1", "3", 20), ("2", "1", 5), ("2", "2", 6)])
    )
    data, summary = interactions.build(log, items, Options(history=2, targets_per_user=5, negatives=2, candidates=4))
    assert summary["users"] == 1 and summary["users_skipped_fewer_than_3_items"] == 1
    (test,) = data["test"]
    assert test["positive"] == "7" and test["history"] == "Film 9 | 1999 | Drama ; Film 3 | 1993 | Drama"
    cands = [c["item"] for c in test["candidates"]]
    assert len(cands) == 5 and "7" in cands and not {"5", "3", "9"} & set(cands)  # negatives are never-seen items
    assert data["retrieval-dev"] == [("Film 3 | 1993 | Drama ; Film 5 | 1995 | Drama", "Film 9 | 1999 | Drama")]
    assert data["retrieval-train"] == [("Film 5 | 1995 | Drama", "Film 3 | 1993 | Drama")]  # train = 5, 3
    labels = sorted(label for *_, label in data["pairs-train"])
    assert labels == ["0", "0", "1"]  # one positive, two sampled negatives
    assert data["popularity"] == [{"5": 1, "3": 1}]  # dev and test items are not counted


def test_command_writes_files_and_refuses_a_non_empty_out(tmp_path, capsys):
    log, items = write(tmp_path, log_of([("1", str(i), i) for i in range(1, 8)]))
    out = tmp_path / "out"
    assert cli.main(["recommend", "prepare", log, items, "--out", str(out), "--candidates", "9"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["pairs-train.tsv", "pairs-dev.tsv", "retrieval-train.tsv", "retrieval-dev.tsv", "test.jsonl"]
        + ["popularity.json", "summary.json"]
    )
    assert (out / "pairs-train.tsv").read_text(encoding="utf-8").startswith("history\titem\tlabel\n")
    assert len(json.loads((out / "test.jsonl").read_text(encoding="utf-8"))["candidates"]) == 10
    capsys.readouterr()
    assert cli.main(["recommend", "prepare", log, items, "--out", str(out), "--candidates", "9"]) == 2
    assert "--out is not empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    "inter, message",
    [
        (log_of([("1", "99", 1)]), r"log.inter:2: item '99' is not in the item file"),
        (log_of([("1", "2", 1)]) + "1\t3\t4\n", r"log.inter:3: expected 4 fields \(as in the header\), found 3"),
        (log_of([("1", "2", 1)]).replace("\t1\n", "\tyesterday\n"), r"log.inter:2: timestamp: expected a number"),
        ("user\titem_id:token\ttimestamp:float\n1\t2\t3\n", r"log.inter:1: --user-column: no column 'user_id'.*user"),
    ],
)
def test_bad_logs_name_file_and_line(tmp_path, inter, message):
    log, items = write(tmp_path, inter)
    with pytest.raises(DataError, match=message):
        interactions.build(log, items, Options())


def test_bad_item_file_and_unknown_text_column(tmp_path):
    log, items = write(tmp_path, log_of([("1", "2", 1)]), ITEMS + "31\t\t\t\n")
    with pytest.raises(DataError, match=r"movies.item:32: item '31' has no text"):
        interactions.build(log, items, Options())
    log, items = write(tmp_path, log_of([("1", "2", 1)]))
    with pytest.raises(DataError, match=r"movies.item:1: --item-text: no column 'classes'.*did you mean 'class'"):
        interactions.build(log, items, Options(item_text=("movie_title", "classes")))


def test_too_few_unseen_items_for_the_candidates(tmp_path):
    log, items = write(tmp_path, log_of([("1", str(i), i) for i in range(1, 8)]))
    with pytest.raises(DataError, match="cannot sample 40 unseen items"):
        interactions.build(log, items, Options(candidates=40))
