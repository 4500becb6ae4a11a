"""Label noise: does `tunelab data audit` find flipped labels, and does training on `tunelab data clean`'s output
win back the accuracy the noise cost?

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/label_noise.py [--rows 4000] [--seeds 0,1]

Steps: the first N SST-2 training rows; 10% of their labels flipped (seeded); `tunelab data audit` lists likely
label errors (minilm-l6 embeddings + logistic regression, 5-fold out-of-fold probabilities, cleanlab); precision
and recall against the flipped rows; `tunelab data clean --fix label-errors` writes the cleaned file; minilm-l6
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
            "--folds",
            args.folds,
        )
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
        f"--label-probe {args.label_probe} --folds {args.folds}"
        + (f" --dev-rows {args.dev_rows}" if args.dev_rows else "")
        + f"` ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs)",
        "",
        f"First {args.rows} SST-2 training rows, {len(flipped)} labels flipped (seed 0). "
        f"Audit ({audit_s:.0f} s; probe: {audit['stats']['label_model']['probe']}, out-of-fold accuracy on the noisy labels "
        f"{audit['stats']['label_model']['out_of_fold_accuracy']}): "
        f"{len(found)} likely label errors, {hits} of them flipped rows.",
        "",
        "| recall (flipped rows found) | precision (found rows that were flipped) |",
        "|---|---|",
        f"| {hits / len(flipped):.3f} ({hits}/{len(flipped)}) | {hits / max(len(found), 1):.3f} ({hits}/{len(found)}) |",
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
            "| training file | rows | dev accuracy (per seed) | mean |",
            "|---|---|---|---|",
        ]
        for name, n in (("clean", len(rows)), ("noisy", len(rows)), ("cleaned", kept_rows)):
            lines.append(f"| {name} | {n} | {', '.join(f'{a:.4f}' for a in acc[name])} | {mean[name]:.4f} |")
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
