"""Error analysis on hand-made predictions: ordering, confusions, length buckets, NER span kinds, JSONL export."""

import json

import pytest

from tunelab.evaluation import error_analysis as ea

LABELS = ["neg", "pos"]
RECORDS = [
    {"line": 2, "text": "a", "gold": 0, "probs": [0.2, 0.8], "length": 5},  # wrong, conf 0.8
    {"line": 3, "text": "b", "gold": 0, "probs": [0.9, 0.1], "length": 6},  # right
    {"line": 4, "text": "c", "gold": 1, "probs": [0.95, 0.05], "length": 20},  # wrong, conf 0.95
    {"line": 5, "text": "d", "gold": 1, "probs": [0.4, 0.6], "length": 200},  # right
    {"line": 6, "text": "e", "gold": 0, "probs": [0.45, 0.55], "length": 7},  # wrong, conf 0.55
]


def test_mistakes_most_confident_first():
    ms = ea.classification_mistakes(RECORDS, LABELS)
    assert [m["line"] for m in ms] == [4, 2, 6]
    assert (
        ms[0]["gold"] == "pos" and ms[0]["pred"] == "neg" and ms[0]["confidence"] == 0.95 and ms[0]["gold_prob"] == 0.05
    )


def test_summary_confusions_and_length_buckets():
    s = ea.classification(RECORDS, LABELS, top=2, examples=1)
    assert s["mistakes"] == 3 and [m["line"] for m in s["confident_mistakes"]] == [4, 2]
    assert s["confusions"][0] == {
        "gold": "neg",
        "pred": "pos",
        "count": 2,
        "examples": [{"line": 2, "text": "a", "gold": "neg", "pred": "pos", "confidence": 0.8}],
    }
    assert s["confusions"][1]["count"] == 1
    assert s["length_buckets"] == [
        {"bucket": "1-8", "count": 3, "accuracy": pytest.approx(1 / 3)},
        {"bucket": "17-32", "count": 1, "accuracy": 0.0},
        {"bucket": "129+", "count": 1, "accuracy": 1.0},
    ]


def test_entity_mistake_kinds():
    sent = {
        "line": 1,
        "text": "Ann met Bob in Paris today",
        "tokens": "Ann met Bob in Paris today".split(),
        "gold": ["B-PER", "O", "B-PER", "O", "B-LOC", "O"],
        "pred": ["B-PER", "O", "B-ORG", "O", "O", "B-MISC"],
        "probs": [0.99, 0.9, 0.7, 0.9, 0.8, 0.6],
    }
    ms = ea.entity_mistakes([sent])
    assert [(m["kind"], m["span"], m["gold"], m["pred"]) for m in ms] == [
        ("wrong_type", "Bob", "PER", "ORG"),
        ("spurious", "today", "O", "MISC"),
        ("missed", "Paris", "LOC", "O"),
    ]
    s = ea.token_classification([sent])
    assert s["mistake_kinds"] == {"wrong_type": 1, "spurious": 1, "missed": 1}
    # 1 of 3 gold found, 1 of 3 predicted right: F1 = 2*1 / (2*1 + 2 + 2)
    assert s["length_buckets"] == [{"bucket": "1-8", "count": 1, "f1": pytest.approx(2 / 6)}]


def test_jsonl_export(tmp_path):
    path = ea.write_jsonl(ea.classification_mistakes(RECORDS, LABELS), tmp_path / "errors.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["text"] == "c" and set(lines[0]["probs"]) == {"neg", "pos"}
