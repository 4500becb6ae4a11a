"""Acceptance checks on real data (SST-2): duplicates against a direct count, train/dev overlap, label noise."""

import csv
import json
import random
from collections import defaultdict

import pytest

from tunelab import cli

pytestmark = pytest.mark.real


def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        return [(line, row) for line, row in enumerate(reader, start=2)]  # SST-2 has no multi-line fields


def test_sst2_duplicates_conflicts_and_overlap_match_a_direct_count(shared_data, tmp_path):
    train, dev = shared_data / "sst2" / "train.tsv", shared_data / "sst2" / "dev.tsv"
    out = tmp_path / "audit"
    assert (
        cli.main(
            [
                "data",
                "audit",
                str(train),
                str(dev),
                "data.text_column=sentence",
                "--out",
                str(out),
                "--skip",
                "near_duplicates,label_errors,language,lengths",
            ]
        )
        == 0
    )
    data = json.loads((out / "audit.json").read_text())
    groups, dev_groups = defaultdict(list), defaultdict(list)
    for line, (text, label) in read_tsv(train):
        groups[" ".join(text.split())].append((line, label))
    for line, (text, label) in read_tsv(dev):
        dev_groups[" ".join(text.split())].append((line, label))
    dups = [g for g in groups.values() if len(g) > 1] + [g for g in dev_groups.values() if len(g) > 1]
    conflicts = [g for g in dups if len({lab for _, lab in g}) > 1]
    in_train = set(groups)
    overlap = [line for line, (text, _) in read_tsv(dev) if " ".join(text.split()) in in_train]
    assert data["summary"]["exact_duplicates"] == sum(len(g) - 1 for g in dups) > 0
    assert data["summary"]["conflicting_duplicates"] == sum(len(g) for g in conflicts) > 0
    found = {
        tuple(int(r.rsplit(":", 1)[1]) for r in row["refs"])
        for f in data["findings"]
        if f["check"] == "conflicting_duplicates"
        for row in f["rows"]
    }
    assert found == {tuple(line for line, _ in g) for g in conflicts}
    leaked = sorted(
        int(row["refs"][-1].rsplit(":", 1)[1])
        for f in data["findings"]
        if f["check"] == "leakage_exact"
        for row in f["rows"]
    )
    assert leaked == overlap and len(overlap) > 0


def test_label_errors_found_on_a_noisy_sst2_slice(shared_data, tmp_path):
    rows = read_tsv(shared_data / "sst2" / "train.tsv")[:600]
    rng = random.Random(0)
    flipped = set(rng.sample(range(len(rows)), 60))
    path = tmp_path / "noisy.tsv"
    lines = ["sentence\tlabel"] + [
        f"{t}\t{1 - int(lab) if k in flipped else lab}" for k, (_, (t, lab)) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "audit"
    assert (
        cli.main(
            [
                "data",
                "audit",
                str(path),
                "data.text_column=sentence",
                "--out",
                str(out),
                "--skip",
                "near_duplicates,leakage,language,lengths,encoding",
            ]
        )
        == 0
    )
    data = json.loads((out / "audit.json").read_text())
    found = {
        int(row["refs"][0].rsplit(":", 1)[1]) - 2
        for f in data["findings"]
        if f["check"] == "label_errors"
        for row in f["rows"]
    }
    hits = len(found & flipped)
    saved = json.loads((out / "label_probs.json").read_text())  # the probe's probabilities, for other cutoffs
    assert len(saved["probs"]) == len(saved["refs"]) == 600 and saved["classes"] == ["0", "1"]
    # Measured here (2026-12-01): with the default posterior cutoff and the minilm-l6 probe 30 of the 60 flipped rows
    # among 81 flagged (recall 0.50, precision 0.37, nearly four times the 10% a random pick would hit); before the
    # posterior cutoff, the estimate cutoff with a C=1 probe flagged 145 (41 flipped: 0.68 / 0.28). Precision is the weak side on SST-2's short phrases (see
    # the README's label-noise figures and bench/label_noise.py); the bar checks what the probe does deliver.
    assert hits / len(flipped) >= 0.45 and hits / max(len(found), 1) >= 0.33, (hits, len(found))
