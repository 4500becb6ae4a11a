"""Label noise: does `tunelab data audit` find flipped labels, and does training on `tunelab data clean`'s output
win back the accuracy the noise cost?

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/label_noise.py [--rows 4000] [--seeds 0,1]

Steps: the first N SST-2 training rows; 10% of their labels flipped (seeded); `tunelab data audit` lists likely
label errors (a probe's out-of-fold probabilities, cleanlab; every cutoff is scored on the audit's saved
probabilities); precision and recall against the flipped rows; `tunelab data clean --fix label-errors` writes the cleaned file; minilm-l6
is fine-tuned (full, 2 epochs) on the clean, the noisy and the cleaned file and scored on the SST-2 dev file.
Writes bench/results/label_noise.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sst2"
WORK = REPO / "runs" / "bench-label-noise"


def tunelab(*args: str) -> None:
    subprocess.run(
        [str(REPO / ".venv" / "bin" / "tunelab"), *args], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["sentence", "label"])
        w.writerows(rows)


def train(name: str, path: Path, seed: int, dev_rows: int | None, epochs: str = "2") -> float:
    run = WORK / f"run-{name}-{seed}"
    if not (run / "metrics.json").is_file():
        shutil.rmtree(run, ignore_errors=True)
        tunelab(
            "train",
            f"output_dir={run}",
            "model.name=minilm-l6",
            "model.max_length=64",
            f"data.train={path}",
            f"data.dev={DATA / 'dev.tsv'}",
            "data.text_column=sentence",
            "method=full",
            f"train.epochs={epochs}",
            "train.batch_size=32",
            "train.lr=5e-5",
            f"train.seed={seed}",
            "train.threads=2",
            *([f"data.max_dev_rows={dev_rows}"] if dev_rows else []),
            "--quiet",
        )
    return json.loads((run / "metrics.json").read_text())["dev"]["accuracy"]


def cutoff_rows(probs_file: Path, flipped: set[int]) -> list[str]:
    """Recall and precision of each way to pick how many rows to flag, from the audit's saved probabilities."""
    import numpy as np
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    saved = json.loads(probs_file.read_text())
    rows = [int(ref.rsplit(":", 1)[1]) - 2 for ref in saved["refs"]]  # line 2 is row 0 (after the header)
    y = np.array([saved["classes"].index(g) for g in saved["given"]])
    probs = np.array(saved["probs"])
    order = np.argsort(get_label_quality_scores(y, probs, method="self_confidence"), kind="stable")
    picks = {
        "prune (find_label_issues, prune_by_noise_rate)": find_label_issues(
            y, probs, filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence"
        ),
    }
    for method in ("off_diagonal", "off_diagonal_calibrated"):
        n = int(num_label_issues(y, probs, estimation_method=method))
        picks[f"estimate: lowest quality, num_label_issues ({method}) = {n}"] = order[:n]
    picks[f"lowest quality, the true number of flips ({len(flipped)}; not knowable in practice)"] = order[
        : len(flipped)
    ]
    out = []
    for name, idx in picks.items():
        found = {rows[i] for i in idx}
        hits = len(found & flipped)
        out.append(f"| {name} | {len(found)} | {hits / len(flipped):.3f} | {hits / max(len(found), 1):.3f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seeds", default="0", help="training seeds (comma-separated)")
    ap.add_argument("--dev-rows", type=int, default=None, help="score on the first N dev rows (default: all 6,735)")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--reuse-audit", action="store_true", help="keep the audit and cleaned file of an earlier run")
    ap.add_argument("--epochs", default="2")
    ap.add_argument("--label-probe", default="finetune", choices=("embedding", "finetune"))
    ap.add_argument("--folds", default="3", help="probe folds (3: each fold fine-tunes on two thirds of the rows)")
    ap.add_argument("--label-cutoff", default="estimate", choices=("estimate", "prune"))
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    with (DATA / "train.tsv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        rows = [tuple(r) for _, r in zip(range(args.rows), reader)]
    rng = random.Random(0)
    flipped = set(rng.sample(range(len(rows)), round(args.noise * len(rows))))
    noisy = [(t, str(1 - int(lab)) if k in flipped else lab) for k, (t, lab) in enumerate(rows)]
    write(WORK / "clean.tsv", rows)
    write(WORK / "noisy.tsv", noisy)
    start = time.time()
    if not args.reuse_audit:
        shutil.rmtree(WORK / "audit", ignore_errors=True)
        tunelab(
            "data",
            "audit",
            str(WORK / "noisy.tsv"),
            "data.text_column=sentence",
            "--out",
            str(WORK / "audit"),
            "--skip",
            "near_duplicates,leakage,language",
            "--label-probe",
            args.label_probe,
            "--label-cutoff",
            args.label_cutoff,
            "--folds",
            args.folds,
        )
        for run in WORK.glob("run-cleaned-*"):  # trained on the previous audit's cleaned file
            shutil.rmtree(run)
    audit_s = time.time() - start
    audit = json.loads((WORK / "audit" / "audit.json").read_text())
    found = {
        int(row["refs"][0].rsplit(":", 1)[1]) - 2
        for f in audit["findings"]
        if f["check"] == "label_errors"
        for row in f["rows"]
    }
    hits = len(found & flipped)
    if not args.reuse_audit:
        shutil.rmtree(WORK / "cleaned", ignore_errors=True)
        tunelab(
            "data",
            "clean",
            str(WORK / "noisy.tsv"),
            "data.text_column=sentence",
            "--out",
            str(WORK / "cleaned"),
            "--fix",
            "label-errors",
            "--from-audit",
            str(WORK / "audit"),
            "--skip",
            "near_duplicates,leakage,language",
        )
    cleaned = WORK / "cleaned" / "noisy.tsv"
    kept_rows = sum(1 for _ in cleaned.open(encoding="utf-8")) - 1
    lines = [
        "# Label noise: confident learning on SST-2, and training on the cleaned file",
        "",
        f"Command: `flock /tmp/tunelab-cpu.lock .venv/bin/python bench/label_noise.py --rows {args.rows} --seeds {args.seeds} "
        f"--label-probe {args.label_probe} --label-cutoff {args.label_cutoff} --folds {args.folds} --epochs {args.epochs}"
        + (f" --dev-rows {args.dev_rows}" if args.dev_rows else "")
        + f"` ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs)",
        "",
        f"First {args.rows} SST-2 training rows, {len(flipped)} labels flipped (seed 0). "
        f"Audit ({audit_s:.0f} s; probe: {audit['stats']['label_model']['probe']}, out-of-fold accuracy on the noisy labels "
        f"{audit['stats']['label_model']['out_of_fold_accuracy']}): "
        f"{len(found)} likely label errors (cutoff {args.label_cutoff}), {hits} of them flipped rows.",
        "",
        "Every cutoff on the same out-of-fold probabilities (`label_probs.json` of the audit):",
        "",
        "| cutoff | flagged | recall (flipped rows found) | precision (flagged rows that were flipped) |",
        "|---|---|---|---|",
        *cutoff_rows(WORK / "audit" / "label_probs.json", flipped),
        "",
        f"`tunelab data clean --fix label-errors` kept {kept_rows} of {len(rows)} rows.",
    ]
    if not args.skip_training:
        seeds = [int(s) for s in args.seeds.split(",")]
        acc = {
            name: [train(name, path, s, args.dev_rows, args.epochs) for s in seeds]
            for name, path in (("clean", WORK / "clean.tsv"), ("noisy", WORK / "noisy.tsv"), ("cleaned", cleaned))
        }
        mean = {k: sum(v) / len(v) for k, v in acc.items()}
        lost, won = mean["clean"] - mean["noisy"], mean["cleaned"] - mean["noisy"]
        dev = f"first {args.dev_rows}" if args.dev_rows else "all 6,735"
        lines += [
            "",
            f"minilm-l6, full fine-tuning, {args.epochs} epoch(s), max_length 64, seeds {args.seeds}; dev accuracy on {dev} SST-2 dev rows:",
            "",
            "| training file | rows | dev accuracy (per seed) | mean | trained (runs are reused while their file is unchanged) |",
            "|---|---|---|---|---|",
        ]
        for name, n in (("clean", len(rows)), ("noisy", len(rows)), ("cleaned", kept_rows)):
            when = ", ".join(
                time.strftime(
                    "%Y-%m-%d %H:%M", time.localtime((WORK / f"run-{name}-{s}" / "metrics.json").stat().st_mtime)
                )
                for s in seeds
            )
            lines.append(f"| {name} | {n} | {', '.join(f'{a:.4f}' for a in acc[name])} | {mean[name]:.4f} | {when} |")
        share = f"{won / lost:.2f}" if lost > 0 else "n/a (the noise cost nothing)"
        lines += [
            "",
            f"Accuracy lost to the noise: {lost * 100:.2f} points; won back by cleaning: {won * 100:.2f} points "
            f"(share recovered: {share}).",
        ]
    (REPO / "bench" / "results" / "label_noise.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
