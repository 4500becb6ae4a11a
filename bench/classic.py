"""Acceptance numbers for the classic-task features (issue 23), on real data from ../shared/data, with minilm-l6.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/classic.py multilabel [--train 2000]
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/classic.py regression
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/classic.py imbalance [--seeds 0,1,2]

multilabel: AG News recast as multi-label: every row keeps its topic and, for a seeded 20% of rows, gets a second
    topic drawn at random from the other three (`make_multilabel` below is the script that makes it). Disjoint
    train/dev/test slices of the 10,001 rows; `task: multi_label` trained once; thresholds tuned per label on dev;
    micro-F1 at the tuned thresholds vs a fixed 0.5 on dev and on the test slice (which was never tuned on).
regression: MovieLens-100k, one row per movie with at least 10 ratings: text = "title (year)", text pair = its
    genres, target = the movie's mean rating. Movies split 70/15/15 (seeded); `task: regression` vs the mean
    predictor (the training mean for every movie), MSE/MAE/Pearson/Spearman on dev and test.
imbalance: SST-2 training rows subsampled to 10% negatives; no class weights vs `train.class_weights: balanced`
    (and the balanced sampler) over 3 seeds; minority (negative) F1 on the SST-2 dev file.
Writes bench/results/classic-<name>.md (and .json) with the command and the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DATA, RESULTS, header, load_average, machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "runs" / "bench-classic"
TOPICS = ["World", "Sports", "Business", "Sci/Tech"]


def tunelab(*args: str) -> None:
    subprocess.run(
        [str(REPO / ".venv" / "bin" / "tunelab"), *args], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )


def write_tsv(path: Path, head: list[str], rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(head)
        w.writerows(rows)
    return path


def train(name: str, *overrides: str) -> dict:
    """`tunelab train` into runs/bench-classic/<name> (reused when finished); its metrics.json."""
    run = WORK / name
    if not (run / "metrics.json").is_file():
        shutil.rmtree(run, ignore_errors=True)
        tunelab("train", f"output_dir={run}", "model.name=minilm-l6", "method=full", "train.threads=2", *overrides)
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- multi-label AG News


def make_multilabel(rows: list[tuple[str, str]], share: float, seed: int) -> list[tuple[str, str]]:
    """Each (text, topic) keeps its topic; a seeded ``share`` of rows gets a second, different random topic."""
    rng = random.Random(seed)
    out = []
    for text, topic in rows:
        labels = [topic]
        if rng.random() < share:
            labels.append(rng.choice([t for t in TOPICS if t != topic]))
        out.append((text, ",".join(labels)))
    return out


def multilabel(args) -> tuple[list[str], dict]:
    with (DATA / "agnews" / "train.tsv").open(encoding="utf-8") as fh:
        rows = [tuple(r) for r in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) == 2]
    rng = random.Random(0)
    rng.shuffle(rows)
    recast = make_multilabel(rows, 0.2, seed=1)
    n, d = args.train, args.dev
    files = {
        s: write_tsv(WORK / "agnews-ml" / f"{s}.tsv", ["text", "labels"], part)
        for s, part in (("train", recast[:n]), ("dev", recast[n : n + d]), ("test", recast[n + d : n + 2 * d]))
    }
    m = train(
        f"agnews-ml-{n}",
        "task=multi_label",
        f"data.train={files['train']}",
        f"data.dev={files['dev']}",
        f"data.test={files['test']}",
        "data.label_column=labels",
        "model.max_length=96",
        f"train.epochs={args.epochs}",
        "train.batch_size=32",
        "train.lr=1e-4",
    )
    two = sum("," in lab for _, lab in recast[:n])
    lines = [
        f"AG News as multi-label: {n} train / {d} dev / {d} test rows (disjoint slices of the 10,001; {two} training rows "
        f"({100 * two / n:.1f}%) carry a second random topic), minilm-l6 full fine-tuning, {args.epochs} epochs, "
        "lr 1e-4, batch 32, max_length 96. Thresholds tuned per label on dev; the test slice uses the dev-tuned values.",
        "",
        "| split | micro-F1 tuned | micro-F1 at 0.5 | macro-F1 tuned | macro-F1 at 0.5 | samples-F1 | subset accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("dev", "test"):
        r = m[split]
        lines.append(
            f"| {split} | {r['micro_f1']:.4f} | {r['micro_f1_at_0.5']:.4f} | {r['macro_f1']:.4f} | "
            f"{r['macro_f1_at_0.5']:.4f} | {r['samples_f1']:.4f} | {r['subset_accuracy']:.4f} |"
        )
    lines += ["", "Tuned thresholds: " + ", ".join(f"{k} {v:.2f}" for k, v in m["dev"]["thresholds"].items())]
    return lines, {"dev": m["dev"], "test": m["test"], "train_seconds": m["train_seconds"]}


# ---------------------------------------------------------------- regression MovieLens


def movielens_rows(min_ratings: int) -> list[tuple[str, str, float]]:
    ratings = defaultdict(list)
    with (DATA / "movielens-100k" / "ml-100k.inter").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            _, item, rating, _ = line.rstrip("\n").split("\t")
            ratings[item].append(float(rating))
    out = []
    with (DATA / "movielens-100k" / "ml-100k.item").open(encoding="latin-1") as fh:
        next(fh)
        for line in fh:
            item, title, year, genres = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
            if len(ratings[item]) >= min_ratings and title.strip():
                text = f"{title} ({year})" if year.strip() else title
                out.append((text, genres.replace(" ", ", ") or "unknown", statistics.mean(ratings[item])))
    return out


def regression(args) -> tuple[list[str], dict]:
    rows = movielens_rows(10)
    random.Random(0).shuffle(rows)
    n = len(rows)
    a, b = int(0.7 * n), int(0.85 * n)
    parts = {"train": rows[:a], "dev": rows[a:b], "test": rows[b:]}
    files = {
        s: write_tsv(
            WORK / "movielens" / f"{s}.tsv", ["title", "genres", "rating"], [(t, g, f"{y:.4f}") for t, g, y in p]
        )
        for s, p in parts.items()
    }
    m = train(
        "movielens-reg",
        "task=regression",
        f"data.train={files['train']}",
        f"data.dev={files['dev']}",
        f"data.test={files['test']}",
        "data.text_column=title",
        "data.text_pair_column=genres",
        "data.label_column=rating",
        "model.max_length=48",
        f"train.epochs={args.epochs}",
        "train.batch_size=16",
        "train.lr=1e-4",
    )
    mean = statistics.mean(y for _, _, y in parts["train"])
    base = {
        s: {
            "mse": statistics.mean((y - mean) ** 2 for _, _, y in p),
            "mae": statistics.mean(abs(y - mean) for _, _, y in p),
        }
        for s, p in parts.items()
        if s != "train"
    }
    lines = [
        f"MovieLens-100k, {n} movies with at least 10 ratings ({a} train / {b - a} dev / {n - b} test, seeded split); "
        "text = title (year), text pair = genres, target = the movie's mean rating (1-5). minilm-l6 full fine-tuning, "
        f"{args.epochs} epochs, lr 1e-4, batch 16, MSE on standardised targets. Mean predictor = the training mean "
        f"({mean:.3f}) for every movie (its correlations are undefined: a constant).",
        "",
        "| split | model MSE | model MAE | Pearson | Spearman | mean-predictor MSE | mean-predictor MAE |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in ("dev", "test"):
        r = m[s]
        lines.append(
            f"| {s} | {r['mse']:.4f} | {r['mae']:.4f} | {r['pearson']:.4f} | {r['spearman']:.4f} | "
            f"{base[s]['mse']:.4f} | {base[s]['mae']:.4f} |"
        )
    return lines, {"model": {s: m[s] for s in ("dev", "test")}, "mean_predictor": base, "train_mean": mean}


# ---------------------------------------------------------------- imbalance SST-2


def imbalance(args) -> tuple[list[str], dict]:
    with (DATA / "sst2" / "train.tsv").open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    rng = random.Random(0)
    rng.shuffle(rows)
    n_neg = args.train // 10
    neg = [r for r in rows if r[1] == "0"][:n_neg]
    pos = [r for r in rows if r[1] == "1"][: args.train - n_neg]
    sliced = neg + pos
    random.Random(1).shuffle(sliced)
    path = write_tsv(WORK / "sst2-imb" / "train.tsv", ["sentence", "label"], sliced)
    every = {
        "none": [],
        "balanced weights": ["train.class_weights=balanced"],
        "balanced sampler": ["train.sampler=balanced"],
        "focal 2": ["train.focal_gamma=2"],
    }
    variants = {k: v for k, v in every.items() if k in args.variants}
    out: dict = {}
    for name, extra in variants.items():
        for seed in args.seeds:
            m = train(
                f"sst2-imb-{name.replace(' ', '-')}-{seed}",
                f"data.train={path}",
                f"data.dev={DATA / 'sst2' / 'dev.tsv'}",
                f"data.max_dev_rows={args.dev}",
                "data.text_column=sentence",
                "model.max_length=64",
                "train.epochs=2",
                "train.batch_size=32",
                "train.lr=5e-5",
                f"train.seed={seed}",
                "train.metric=macro_f1",
                *extra,
            )
            out.setdefault(name, []).append(
                {
                    "seed": seed,
                    "neg_f1": m["dev"]["per_class"]["0"]["f1"],
                    "pos_f1": m["dev"]["per_class"]["1"]["f1"],
                    "accuracy": m["dev"]["accuracy"],
                    "macro_f1": m["dev"]["macro_f1"],
                }
            )
    lines = [
        f"SST-2: {args.train} training rows with 10% negatives ({n_neg} negative, {args.train - n_neg} positive, seeded "
        f"draw), the first {args.dev} rows of the SST-2 dev file as dev; minilm-l6 full fine-tuning, 2 epochs, lr 5e-5, "
        "batch 32, best checkpoint by macro-F1. Negative (minority) F1 per seed.",
        "",
        "| variant | "
        + " | ".join(f"seed {s}" for s in args.seeds)
        + " | mean negative F1 | mean positive F1 | mean accuracy |",
        "|---|" + "---|" * (len(args.seeds) + 3),
    ]
    for name, runs in out.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{r['neg_f1']:.4f}" for r in runs)
            + f" | {statistics.mean(r['neg_f1'] for r in runs):.4f} | {statistics.mean(r['pos_f1'] for r in runs):.4f}"
            + f" | {statistics.mean(r['accuracy'] for r in runs):.4f} |"
        )
    return lines, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["multilabel", "regression", "imbalance"])
    p.add_argument("--train", type=int, default=None, help="training rows (multilabel 2000, imbalance 2000)")
    p.add_argument("--dev", type=int, default=None, help="dev (and test) rows (multilabel 800, imbalance 1000)")
    p.add_argument("--epochs", type=float, default=None, help="epochs (multilabel 2, regression 4)")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument(
        "--variants",
        type=lambda s: s.split(","),
        default=["none", "balanced weights"],
        help="imbalance: comma-separated of none, balanced weights, balanced sampler, focal 2",
    )
    args = p.parse_args()
    args.train = args.train or 2000
    args.dev = args.dev or (800 if args.what == "multilabel" else 1000)
    args.epochs = args.epochs or (2 if args.what == "multilabel" else 4)
    command = "flock /tmp/tunelab-cpu.lock .venv/bin/python " + " ".join(["bench/classic.py", *sys.argv[1:]])
    before, start = load_average(), time.time()
    lines, record = {"multilabel": multilabel, "regression": regression, "imbalance": imbalance}[args.what](args)
    rep = machine(2)
    text = [f"# {args.what} (issue 23 acceptance)", "", *lines, "", f"Wall time: {time.time() - start:.0f} s.", ""]
    text += header(rep, before, load_average(), command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"classic-{args.what}.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    (RESULTS / f"classic-{args.what}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
