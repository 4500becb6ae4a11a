"""How the `calibrated` cutoff and the `embedding,finetune` probe were chosen: every variant scored on flip seed 0.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/label_noise.py --noise-seeds 0 --skip-training \
        --label-probe finetune --folds 4 --results label_noise_finetune.md --work bench-label-noise-ft
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/label_noise_cutoffs.py

The first command audits flip seed 0 with the fine-tune probe alone (4 folds) and saves its out-of-fold probabilities
(`label_probs.json`). This script adds the embedding probe of minilm-l6 + smollm2-135m's middle layer (logistic
regressions, the same 4 folds; cached embeddings, saved to runs/bench-label-noise-ft/embedding-probs-0.npy so a rerun
does no fitting) and scores, against the flipped rows of seed 0 only, each way to combine the probes (arithmetic or
geometric mean, with or without one temperature fitted to the given labels) and each cutoff. Held-out flip seeds 1 and
2 are not looked at here: bench/label_noise.py checks the chosen setting on them. Writes
bench/results/label_noise_choice.md.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sst2"
WORK = REPO / "runs" / "bench-label-noise-ft"


def geometric(probs: list[np.ndarray]) -> np.ndarray:
    logp = np.mean([np.log(np.clip(p, 1e-12, 1.0)) for p in probs], axis=0)
    q = np.exp(logp - logp.max(1, keepdims=True))
    return q / q.sum(1, keepdims=True)


def cutoffs(y: np.ndarray, probs: np.ndarray) -> dict:
    from cleanlab.filter import find_label_issues

    from tunelab.data import labelnoise

    out = {}
    for invert in (False, True):
        wrong = labelnoise.wrong_label_probability(y, probs, invert=invert)
        out[f"P(wrong) >= 0.5, {'noise matrix undone' if invert else 'direct'}"] = np.flatnonzero(wrong >= 0.5)
    out["find_label_issues confident_learning"] = np.flatnonzero(
        find_label_issues(y, probs, filter_by="confident_learning")
    )
    out["find_label_issues both"] = np.flatnonzero(find_label_issues(y, probs, filter_by="both"))
    return out


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunelab.data import labelnoise

    with (DATA / "train.tsv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        rows = [tuple(r) for _, r in zip(range(4000), reader)]
    flipped = set(random.Random(0).sample(range(len(rows)), 400))
    y = np.array([1 - int(lab) if k in flipped else int(lab) for k, (_, lab) in enumerate(rows)])
    saved = json.loads((WORK / "audit-0" / "label_probs.json").read_text())
    assert saved["given"] == [str(v) for v in y], "label_probs.json is not flip seed 0 of the first 4,000 rows"
    ft = np.array(saved["probs"])
    cached = WORK / "embedding-probs-0.npy"
    if cached.is_file():
        emb = np.load(cached)
    else:
        texts = [t for t, _ in rows]
        feats = [labelnoise.embed(texts, m) for m in ("minilm-l6", "smollm2-135m")]
        emb = labelnoise.out_of_fold_probs(feats, list(y), folds=4, seed=0)
        np.save(cached, emb)
    variants = {
        "finetune": ft,
        "embedding (minilm-l6 + smollm2-135m)": emb,
        "embedding,finetune: arithmetic mean (tunelab's ensemble)": (ft + emb) / 2,
        "embedding,finetune: geometric mean": geometric([ft, emb]),
    }
    lines = [
        "# Choosing the label-error probe and cutoff on flip seed 0",
        "",
        f"Command: `flock /tmp/tunelab-cpu.lock .venv/bin/python bench/label_noise_cutoffs.py` "
        f"({time.strftime('%Y-%m-%d %H:%M')}); the fine-tune probabilities are those of "
        "bench/results/label_noise_finetune.md (4 folds). First 4,000 SST-2 rows, 400 labels flipped "
        "(`random.Random(0)`). Recall: flipped rows found; precision: flagged rows that were flipped.",
        "",
        "| probe | temperature fitted to the given labels | out-of-fold accuracy | cutoff | flagged | recall | precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, probs in variants.items():
        t = labelnoise.temperature(y, probs)
        for scaled, p in (("no", probs), (f"yes (t = {t:.2f})", labelnoise.calibrate(y, probs))):
            acc = (p.argmax(1) == y).mean()
            for cut, idx in cutoffs(y, p).items():
                hits = len(set(idx.tolist()) & flipped)
                lines.append(
                    f"| {name} | {scaled} | {acc:.3f} | {cut} | {len(idx)} | {hits / 400:.3f} | "
                    f"{hits / max(len(idx), 1):.3f} |"
                )
    (REPO / "bench" / "results" / "label_noise_choice.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
