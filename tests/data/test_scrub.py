"""`tunelab data scrub`: replacement modes, logs without personal data, mapping file, NER names, evaluation scoring."""

import json
import random

import pytest

from tunelab import cli
from tunelab.data import pii, scrub

ROWS = [
    "text\tlabel",
    "write to jane@example.org today\t1",
    "call 415-555-0132 or jane@example.org\t0",
    "nothing here\t1",
]


def test_replacer_modes_are_consistent():
    ph = scrub.Replacer("placeholder")
    assert ph("EMAIL", "a@b.io") == "<EMAIL>" and ph("EMAIL", "c@d.io") == "<EMAIL>"
    h = scrub.Replacer("hash", salt="s")
    first = h("EMAIL", "a@b.io")
    assert first.startswith("<EMAIL:") and len(first) == 16 and h("EMAIL", "a@b.io") == first != h("EMAIL", "c@d.io")
    assert scrub.Replacer("hash", salt="s")("EMAIL", "a@b.io") == first  # the same salt, the same hash
    ps = scrub.Replacer("pseudonym", salt="s")
    name = ps("PERSON", "Ann Lee")
    assert (
        len(name.split()) == 2
        and ps("PERSON", "Ann Lee") == name
        and ps.mapping[name] == {"type": "PERSON", "original": "Ann Lee"}
    )
    assert ps("EMAIL", "a@b.io").endswith("@example.com")
    text = "hi a@b.io!"
    assert scrub.replace_spans(text, [pii.Span(3, 9, "EMAIL", "a@b.io")], ph) == "hi <EMAIL>!"


def test_scoring_by_hand():
    assert scrub.matches((0, 10), (5, 10)) and not scrub.matches((0, 10), (9, 20)) and not scrub.matches((0, 2), (2, 4))
    gold = [[(0, 5, "EMAIL"), (10, 20, "PHONE")], [(0, 4, "PHONE")]]
    pred = [[(0, 5, "EMAIL"), (12, 20, "PHONE"), (30, 35, "PHONE")], []]
    got = scrub.score(gold, pred, ["EMAIL", "PHONE"])
    assert got["EMAIL"] == {"gold": 1, "predicted": 1, "precision": 1.0, "recall": 1.0}
    assert got["PHONE"] == {"gold": 2, "predicted": 2, "precision": 0.5, "recall": 0.5}


def test_scrub_file_with_mapping(tmp_path):
    src = tmp_path / "d.tsv"
    src.write_text("\n".join(ROWS) + "\n", encoding="utf-8")
    out, mapping = tmp_path / "out", tmp_path / "map.json"
    assert (
        cli.main(["data", "scrub", str(src), "--out", str(out), "--mapping", str(mapping), "--replace", "pseudonym"])
        == 0
    )
    lines = (out / "d.tsv").read_text().splitlines()
    assert lines[0] == ROWS[0] and lines[3] == ROWS[3] and "jane@example.org" not in "".join(lines)
    fake = lines[1].split()[2]
    assert lines[2].endswith(f"{fake}\t0") and "415-555-0132" not in lines[2]  # the same address, the same pseudonym
    assert json.loads(mapping.read_text())[fake]["original"] == "jane@example.org"
    findings = (out / "findings.jsonl").read_text()
    assert "jane" not in findings and [json.loads(x)["line"] for x in findings.splitlines()] == [2, 3, 3]
    again = ["data", "scrub", str(src), "--out", str(tmp_path / "o2"), "--mapping", str(mapping)]
    assert cli.main(again + ["--replace", "hash"]) == 2  # the mapping file is never overwritten
    assert cli.main(again) == 2  # placeholders cannot be reversed
    assert not (tmp_path / "o2").exists()


def write_names(path, n=120, seed=0):
    """Toy NER data: 'ann' and 'bo' are people."""
    rng = random.Random(seed)
    filler = "the a is was it this that of to in on with and but very good bad".split()
    blocks = []
    for _ in range(n):
        words = [(w, "O") for w in rng.sample(filler, rng.randint(2, 5))]
        words.insert(rng.randint(0, len(words)), (rng.choice(["ann", "bo"]), "B-PER"))
        blocks.append("\n".join(f"{w}\t{t}" for w, t in words))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def test_names_from_a_tunelab_ner_run(tmp_path, tiny_bert_dir):
    from tunelab import config
    from tunelab.recipes import finetune

    train = write_names(tmp_path / "train.conll")
    cfg = config.load(
        None,
        [
            "task=token_classification",
            f"output_dir={tmp_path / 'run'}",
            f"model.name={tiny_bert_dir}",
            f"data.train={train}",
            "train.epochs=6",
            "train.batch_size=16",
            "train.lr=1e-2",
            "train.precision=fp32",
            "train.warmup_fraction=0.0",
            "model.max_length=16",
        ],
    )
    finetune.run(cfg, quiet=True, log=lambda m: None)
    src = tmp_path / "d.jsonl"
    src.write_text(json.dumps({"text": "the good ann was in the film", "label": "x"}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert cli.main(["data", "scrub", str(src), "--ner", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert json.loads((out / "d.jsonl").read_text())["text"] == "the good <PERSON> was in the film"
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps(
            {
                "text": "it was bo and a@b.io",
                "spans": [{"start": 7, "end": 9, "label": "PER"}, {"start": 14, "end": 20, "label": "EMAIL_ADDRESS"}],
            }
        )
        + "\n"
    )
    assert (
        cli.main(
            ["data", "scrub", "--evaluate", str(gold), "--ner", str(tmp_path / "run"), "--out", str(tmp_path / "ev")]
        )
        == 0
    )
    per = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["per_type"]
    assert per["PERSON"]["recall"] == 1.0 and per["EMAIL"] == {
        "gold": 1,
        "predicted": 1,
        "precision": 1.0,
        "recall": 1.0,
    }


@pytest.mark.real
def test_pii_patterns_on_presidio_synthetic_set(shared_data, tmp_path):
    out = tmp_path / "ev"
    path = shared_data / "pii" / "synth_dataset_v2.json"
    assert (
        cli.main(
            [
                "data",
                "scrub",
                "--evaluate",
                str(path),
                "--out",
                str(out),
                "--types",
                "EMAIL,URL,IP_ADDRESS,CREDIT_CARD,IBAN,US_SSN,PHONE,DATE,ADDRESS",
            ]
        )
        == 0
    )
    per = json.loads((out / "evaluation.json").read_text())["per_type"]
    for kind in ("EMAIL", "CREDIT_CARD", "IBAN", "PHONE", "IP_ADDRESS"):
        assert per[kind]["recall"] >= 0.95 and per[kind]["precision"] >= 0.9, (kind, per[kind])


def test_scrub_instruction_data_and_text_documents(tmp_path):
    src = tmp_path / "a.json"
    src.write_text(
        json.dumps(
            [{"instruction": "Reply to bob@corp.com", "input": "IP 10.0.0.7", "output": "Done, bob@corp.com", "id": 7}]
        ),
        encoding="utf-8",
    )
    out = tmp_path / "o1"
    assert cli.main(["data", "scrub", str(src), "--out", str(out)]) == 0
    assert json.loads((out / "a.json").read_text()) == [
        {"instruction": "Reply to <EMAIL>", "input": "IP <IP_ADDRESS>", "output": "Done, <EMAIL>", "id": 7}
    ]
    doc = tmp_path / "notes.txt"
    doc.write_text("First doc, call +44 20 7946 0958.\nSecond line.\n\nOther doc.\n", encoding="utf-8")
    out = tmp_path / "o2"
    assert cli.main(["data", "scrub", str(doc), "--out", str(out)]) == 0
    assert (out / "notes.txt").read_text() == "First doc, call <PHONE>.\nSecond line.\n\nOther doc.\n\n"


def test_biased_tags_by_hand():
    import math

    import torch

    labels = ["O", "B-PER", "I-PER"]
    logp = {
        0: torch.tensor([0.9, 0.08, 0.02]).log(),
        1: torch.tensor([0.6, 0.1, 0.3]).log(),
        2: torch.tensor([0.2, 0.7, 0.1]).log(),
    }
    assert scrub.biased_tags(logp, 3, labels, 0.5) == ["O", "O", "B-PER"]  # name probability 0.1, 0.4, 0.8
    assert scrub.biased_tags(logp, 3, labels, 0.3) == [
        "O",
        "B-PER",
        "B-PER",
    ]  # word 1: I-PER after O is repaired to B-PER
    assert scrub.biased_tags(logp, 4, labels, 0.05) == ["B-PER", "I-PER", "B-PER", "O"]  # word 3 has no score: O
    assert math.isclose(float(logp[1].exp()[0]), 0.6, rel_tol=1e-6)  # the caller's scores are not modified
