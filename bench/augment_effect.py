"""Augmentation on a small training set: the effect of each `tunelab data augment` operation on SST-2 dev accuracy.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/augment_effect.py --ops none,synonym,swap
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/augment_effect.py --ops delete,insert
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/augment_effect.py --ops paraphrase
    .venv/bin/python bench/augment_effect.py --table        # writes bench/results/augment.md from the finished runs

The first 200 SST-2 training rows; for each operation and seed (0, 1, 2) `tunelab data augment --copies 1` adds one
new row per original row (so 400 rows, originals kept), then minilm-l6 is fine-tuned (full, a fixed 120 steps of
batch 16, so every condition gets the same compute) and scored on the first 2,000 SST-2 dev rows. Finished runs are
reused, so the work can be split across several locked invocations.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sst2"
WORK = REPO / "runs" / "bench-augment"
SEEDS = (0, 1, 2)
OPS = ("none", "synonym", "swap", "delete", "insert", "paraphrase")


def tunelab(*args: str) -> None:
    subprocess.run(
        [str(REPO / ".venv" / "bin" / "tunelab"), *args], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )


def make_slice(rows: int) -> Path:
    path = WORK / "slice.tsv"
    if not path.is_file():
        WORK.mkdir(parents=True, exist_ok=True)
        with (
            (DATA / "train.tsv").open(newline="", encoding="utf-8") as fh,
            path.open("w", newline="", encoding="utf-8") as out,
        ):
            reader, writer = csv.reader(fh, delimiter="\t"), csv.writer(out, delimiter="\t", lineterminator="\n")
            for _, row in zip(range(rows + 1), reader):
                writer.writerow(row)
    return path


def run_one(op: str, seed: int, base: Path) -> dict:
    folder = WORK / f"{op}-{seed}"
    result = folder / "result.json"
    if result.is_file():
        return json.loads(result.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    train, aug_s, summary = base, 0.0, {}
    if op != "none":
        start = time.time()
        tunelab(
            "data",
            "augment",
            str(base),
            "data.text_column=sentence",
            "--ops",
            op,
            "--copies",
            "1",
            "--seed",
            str(seed),
            "--out",
            str(folder / "aug"),
        )
        aug_s = time.time() - start
        train = folder / "aug" / base.name
        summary = {"rows": sum(1 for _ in train.open(encoding="utf-8")) - 1}
    tunelab(
        "train",
        f"output_dir={folder / 'run'}",
        "model.name=minilm-l6",
        "model.max_length=64",
        f"data.train={train}",
        f"data.dev={DATA / 'dev.tsv'}",
        "data.max_dev_rows=2000",
        "data.text_column=sentence",
        "method=full",
        "train.max_steps=120",
        "train.batch_size=16",
        "train.lr=5e-5",
        "train.eval_every=120",
        f"train.seed={seed}",
        "train.threads=2",
        "--quiet",
    )
    acc = json.loads((folder / "run" / "metrics.json").read_text())["dev"]["accuracy"]
    out = {
        "op": op,
        "seed": seed,
        "accuracy": acc,
        "augment_seconds": round(aug_s, 1),
        "measured": time.strftime("%Y-%m-%d"),
        **summary,
    }
    result.write_text(json.dumps(out))
    shutil.rmtree(folder / "run" / "checkpoints", ignore_errors=True)
    return out


def table() -> str:
    rows, seen, when = [], set(), {}
    by_seed = {}
    for op in OPS:
        res = [
            json.loads((WORK / f"{op}-{s}" / "result.json").read_text())
            for s in SEEDS
            if (WORK / f"{op}-{s}" / "result.json").is_file()
        ]
        if not res:
            continue
        mean = sum(r["accuracy"] for r in res) / len(res)
        if op == "none":
            by_seed = {r["seed"]: r["accuracy"] for r in res}
        paired = ", ".join(
            f"{(r['accuracy'] - by_seed[r['seed']]) * 100:+.2f}" for r in res if op != "none" and r["seed"] in by_seed
        )
        same = [by_seed[r["seed"]] for r in res if r["seed"] in by_seed]  # none's accuracy on this op's seeds
        delta = "" if op == "none" or len(same) < len(res) else f"{(mean - sum(same) / len(same)) * 100:+.2f}"
        n = res[0].get("rows", 200)
        accs = ", ".join(f"{r['accuracy']:.4f}" for r in res)
        seen |= {r["seed"] for r in res}
        rows.append(f"| {op} | {n} | {accs} | {mean:.4f} | {delta} | {paired} |")
        for r in res:
            when.setdefault(r.get("measured", "?"), set()).add(r["seed"])
    return "\n".join(
        [
            "# Augmentation: effect on SST-2 dev accuracy from a 200-row training slice",
            "",
            f"Commands: see the docstring of `bench/augment_effect.py` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs). minilm-l6, full fine-tuning, 120 steps of batch 16 for every condition, scored on "
            "the first 2,000 SST-2 dev rows; `--copies 1` (one new row per original, originals kept); seeds 0, 1, 2 "
            "(augmentation and training).",
            "",
            f"Finished runs only: seeds {', '.join(map(str, sorted(seen)))} of {', '.join(map(str, SEEDS))}; operations "
            f"without a row did not run. Measured: "
            + "; ".join(f"seeds {', '.join(map(str, sorted(s)))} on {d}" for d, s in sorted(when.items()))
            + ".",
            "",
            "| operation | training rows | dev accuracy (per finished seed) | mean | vs none on the same seeds (points, means) "
            "| vs none, same seed (points) |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", default="none,synonym,swap,delete,insert,paraphrase")
    ap.add_argument("--table", action="store_true", help="only write the table from finished runs")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    if not args.table:
        base = make_slice(200)
        for seed in [int(x) for x in args.seeds.split(",")]:
            for op in args.ops.split(","):
                print(json.dumps(run_one(op, seed, base)), flush=True)
    text = table()
    (REPO / "bench" / "results" / "augment.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
