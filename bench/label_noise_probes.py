"""Which label-error probe and which cutoff? Scored against known flips, on cached embeddings (no training).

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/label_noise_probes.py [--rows 4000] [--seeds 0]

The first N SST-2 training rows, 10% of their labels flipped (``random.Random(seed)``, as bench/label_noise.py).
Every probe gives out-of-fold probabilities (5 folds) from logistic regressions on mean-pooled hidden states
(embeddings cached by tunelab.data.labelnoise.embed); every cutoff is scored on them: rows flagged, recall of the
flipped rows, precision. Choices are made on seed 0; seeds 1 and 2 are held-out checks. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sst2"


def score(idx, flipped: set[int]) -> str:
    found = {int(i) for i in idx}
    hits = len(found & flipped)
    return f"{len(found)} | {hits / len(flipped):.3f} | {hits / max(len(found), 1):.3f}"


def all_cutoffs(y: np.ndarray, probs: np.ndarray, n_flipped: int) -> dict:
    """Each candidate way to pick the flagged rows -> their indices."""
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from tunelab.data import labelnoise

    order = np.argsort(get_label_quality_scores(y, probs, method="self_confidence"), kind="stable")
    out = {}
    for how in ("prune_by_noise_rate", "both", "confident_learning"):
        out[f"find_label_issues {how}"] = np.flatnonzero(find_label_issues(y, probs, filter_by=how))
    for how in ("off_diagonal", "off_diagonal_calibrated"):
        out[f"lowest quality, num_label_issues {how}"] = order[: int(num_label_issues(y, probs, estimation_method=how))]
    for invert in (True, False):
        wrong = labelnoise.wrong_label_probability(y, probs, invert=invert)
        out[f"P(wrong) >= 0.5 ({'inverted' if invert else 'direct: posterior'})"] = np.flatnonzero(wrong >= 0.5)
    out[f"lowest quality, true count {n_flipped} (oracle)"] = order[:n_flipped]
    return out


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from tunelab.data import labelnoise

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--probes", default="all", help="comma-separated probe names (default: all)")
    ap.add_argument("--cutoffs", default="all")
    ap.add_argument("--save", default=None, help="folder to save each probe's out-of-fold probabilities in (.npy)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    with (DATA / "train.tsv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        rows = [tuple(r) for _, r in zip(range(args.rows), reader)]
    texts = [t for t, _ in rows]
    t0 = time.time()
    feats = {
        "minilm": labelnoise.embed(texts, "minilm-l6", log=print),
        "smollm2": labelnoise.embed(texts, "smollm2-135m", log=print),
        "smollm2-mid": labelnoise.embed(texts, "smollm2-135m", layer=15, log=print),
    }
    print(f"embeddings: {time.time() - t0:.0f} s")
    probes = {
        "minilm C=1": (["minilm"], 1.0),
        "minilm CV": (["minilm"], None),
        "smollm2 CV": (["smollm2"], None),
        "smollm2-mid CV": (["smollm2-mid"], None),
        "minilm+smollm2 CV": (["minilm", "smollm2"], None),
        "minilm+smollm2-mid CV": (["minilm", "smollm2-mid"], None),
    }
    if args.probes != "all":
        probes = {k: v for k, v in probes.items() if k in args.probes.split(",")}
    print("| seed | probe | oof acc | cutoff | flagged | recall | precision |")
    print("|---|---|---|---|---|---|---|")
    for seed in [int(s) for s in args.seeds.split(",")]:
        rng = random.Random(seed)
        flipped = set(rng.sample(range(len(rows)), round(0.1 * len(rows))))
        y = np.array([1 - int(lab) if k in flipped else int(lab) for k, (_, lab) in enumerate(rows)])
        single = {}  # (feature set, C) -> out-of-fold probabilities: an ensemble averages them (same folds)
        for name, (sets, c) in probes.items():
            t = time.time()
            for s in sets:
                if (s, c) not in single:
                    single[(s, c)] = labelnoise.out_of_fold_probs(feats[s], list(y), folds=5, seed=0, c=c)
            probs = np.mean([single[(s, c)] for s in sets], axis=0)
            if args.save:
                Path(args.save).mkdir(parents=True, exist_ok=True)
                np.save(Path(args.save) / f"seed{seed}-{name.replace(' ', '_')}.npy", probs)
            acc = (probs.argmax(1) == y).mean()
            took = time.time() - t
            for cut, idx in all_cutoffs(y, probs, len(flipped)).items():
                print(f"| {seed} | {name} ({took:.0f} s) | {acc:.3f} | {cut} | {score(idx, flipped)} |", flush=True)


if __name__ == "__main__":
    main()
