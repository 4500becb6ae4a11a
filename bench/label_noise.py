"""Label noise: does `tunelab data audit` find flipped labels, and does training on `tunelab data clean`'s output
win back the accuracy the noise cost?

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/label_noise.py --noise-seeds 0,1,2 --seeds 0 --epochs 3 \
        --dev-rows 2000

Steps: the first N SST-2 training rows; for each flip seed, 10% of their labels flipped (``random.Random(seed)``)
and `tunelab data audit` lists likely label errors (the probe's out-of-fold probabilities, cleanlab; every cutoff
is scored on the audit's saved probabilities); precision and recall against the flipped rows. Choices (probe,
cutoff) are made on flip seed 0; seeds 1 and 2 are held-out checks. `tunelab data clean --fix label-errors` then
cleans the first flip seed's file, and minilm-l6 is fine-tuned (full, ``--epochs``, one evaluation after the last
step) on the clean, the noisy and the cleaned file and scored on the SST-2 dev file. Finished training runs are
reused. Writes bench/results/label_noise.md.
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
    run = WORK / f"run-{name}-e{epochs}-{seed}"
    if not (run / "metrics.json").is_file():
        shutil.rmtree(run, ignore_errors=True)
        start = time.time()
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
            "train.eval_every=1000000",  # one evaluation, after the last step: the final model, not the best epoch
            "train.keep_checkpoints=none",
            *([f"data.max_dev_rows={dev_rows}"] if dev_rows else []),
            "--quiet",
        )
        (run / "bench_seconds.txt").write_text(f"{time.time() - start:.0f}\n")
    acc = json.loads((run / "metrics.json").read_text())["dev"]["accuracy"]
    print(f"{run.name}: dev accuracy {acc:.4f}", flush=True)
    return acc


def cutoff_rows(probs_file: Path, flipped: set[int]) -> list[str]:
    """Recall and precision of each way to pick how many rows to flag, from the audit's saved probabilities."""
    import numpy as np
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from tunelab.data import labelnoise

    saved = json.loads(probs_file.read_text())
    rows = [int(ref.rsplit(":", 1)[1]) - 2 for ref in saved["refs"]]  # line 2 is row 0 (after the header)
    y = np.array([saved["classes"].index(g) for g in saved["given"]])
    probs = np.array(saved["probs"])
    order = np.argsort(get_label_quality_scores(y, probs, method="self_confidence"), kind="stable")
    picks = {
        "posterior: estimated P(label wrong) >= 0.5": labelnoise.label_issues(y, probs, "posterior"),
        "calibrated: the same after temperature scaling and undoing the noise matrix": labelnoise.label_issues(
            y, probs, "calibrated"
        ),
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


def run_audit(noisy: Path, out: Path, args) -> float:
    """`tunelab data audit` of ``noisy`` into ``out``; returns its wall time in seconds."""
    start = time.time()
    shutil.rmtree(out, ignore_errors=True)
    tunelab(
        "data",
        "audit",
        str(noisy),
        "data.text_column=sentence",
        "--out",
        str(out),
        "--skip",
        "near_duplicates,leakage,language",
        "--label-probe",
        args.label_probe,
        "--label-cutoff",
        args.label_cutoff,
        "--folds",
        args.folds,
        *(["--label-model", args.label_model] if args.label_model else []),
    )
    took = time.time() - start
    (out / "bench_seconds.txt").write_text(f"{took:.0f}\n")
    return took


def flagged_rows(audit: dict) -> set[int]:
    """Row numbers (0 = first data row) of the audit's likely label errors."""
    return {
        int(row["refs"][0].rsplit(":", 1)[1]) - 2
        for f in audit["findings"]
        if f["check"] == "label_errors"
        for row in f["rows"]
    }


def audit_section(rows: list, noise_seed: int, args, score_only: bool = False) -> tuple[list[str], set[int]]:
    """Flip labels with ``noise_seed``, audit the noisy file, score the flagged rows; (markdown lines, flipped).
    ``score_only``: just the flipped rows."""
    rng = random.Random(noise_seed)
    flipped = set(rng.sample(range(len(rows)), round(args.noise * len(rows))))
    if score_only:
        return [], flipped
    noisy = [(t, str(1 - int(lab)) if k in flipped else lab) for k, (t, lab) in enumerate(rows)]
    path = WORK / f"noisy-{noise_seed}.tsv"
    write(path, noisy)
    out = WORK / f"audit-{noise_seed}"
    audit_s = None
    if not (args.reuse_audit and (out / "audit.json").is_file()):
        audit_s = run_audit(path, out, args)
        # trained on the previous audit's cleaned or relabelled file
        for run in [*WORK.glob(f"run-cleaned{noise_seed}-*"), *WORK.glob(f"run-relabelled{noise_seed}-*")]:
            shutil.rmtree(run)
    else:  # reused: the time it took when it ran
        took_file = out / "bench_seconds.txt"
        audit_s = float(took_file.read_text()) if took_file.is_file() else None
    audit = json.loads((out / "audit.json").read_text())
    found = flagged_rows(audit)
    hits = len(found & flipped)
    model = audit["stats"]["label_model"]
    took = f"{audit_s:.0f} s" if audit_s is not None else "reused"
    lines = [
        f"### Flip seed {noise_seed}{' (choices made here)' if noise_seed == 0 else ' (held-out check)'}",
        "",
        f"{len(flipped)} labels flipped (`random.Random({noise_seed})`). Audit ({took}; probe: {model['probe']} of "
        f"{model['model']}, out-of-fold accuracy on the noisy labels {model['out_of_fold_accuracy']}): "
        f"**{len(found)} likely label errors (cutoff {args.label_cutoff}), {hits} of them flipped rows: recall "
        f"{hits / len(flipped):.3f}, precision {hits / max(len(found), 1):.3f}**.",
        "",
        "Every cutoff on the same out-of-fold probabilities (`label_probs.json` of the audit):",
        "",
        "| cutoff | flagged | recall (flipped rows found) | precision (flagged rows that were flipped) |",
        "|---|---|---|---|",
        *cutoff_rows(out / "label_probs.json", flipped),
        "",
    ]
    return lines, flipped


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seeds", default="0", help="training seeds (comma-separated)")
    ap.add_argument("--dev-rows", type=int, default=None, help="score on the first N dev rows (default: all 6,735)")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--reuse-audit", action="store_true", help="keep the audits and cleaned file of an earlier run")
    ap.add_argument("--epochs", default="3")
    ap.add_argument(
        "--label-probe", default="embedding", help="--label-probe for the audit: embedding, finetune or both"
    )
    ap.add_argument("--label-model", default=None, help="--label-model for the audit (default: the audit's default)")
    ap.add_argument("--folds", default="5", help="probe folds")
    ap.add_argument("--label-cutoff", default="posterior", choices=("posterior", "calibrated", "estimate", "prune"))
    ap.add_argument("--results", default="label_noise.md", help="file name under bench/results/")
    ap.add_argument("--work", default="bench-label-noise", help="folder under runs/ for the files, audits and runs")
    ap.add_argument(
        "--noise-seeds",
        default="0",
        help="flip seeds to audit (comma-separated); the first one's files are cleaned and trained on",
    )
    args = ap.parse_args()
    global WORK
    WORK = REPO / "runs" / args.work
    WORK.mkdir(parents=True, exist_ok=True)
    with (DATA / "train.tsv").open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        rows = [tuple(r) for _, r in zip(range(args.rows), reader)]
    write(WORK / "clean.tsv", rows)
    noise_seeds = [int(s) for s in args.noise_seeds.split(",")]
    command = (
        f"flock /tmp/tunelab-cpu.lock .venv/bin/python bench/label_noise.py --rows {args.rows} "
        f"--noise-seeds {args.noise_seeds} --label-probe {args.label_probe} --label-cutoff {args.label_cutoff} "
        f"--folds {args.folds}" + (f" --label-model {args.label_model}" if args.label_model else "")
    )
    if args.results != "label_noise.md" or args.work != "bench-label-noise":
        command += f" --results {args.results} --work {args.work}"
    if args.reuse_audit:
        command += " --reuse-audit"
    if args.skip_training:
        command += " --skip-training"
    else:
        command += f" --seeds {args.seeds} --epochs {args.epochs}" + (
            f" --dev-rows {args.dev_rows}" if args.dev_rows else ""
        )
    lines = [
        "# Label noise: confident learning on SST-2, and training on the cleaned file",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPUs)",
        "",
        f"First {args.rows} SST-2 training rows, {round(args.noise * args.rows)} labels flipped per flip seed.",
        "",
    ]
    for ns in noise_seeds:
        section, _ = audit_section(rows, ns, args)
        lines += section
    ns = noise_seeds[0]
    kept = {}
    for fix, folder in (("label-errors", "cleaned"), ("relabel", "relabelled")):
        out_dir = WORK / f"{folder}-{ns}"
        if not (args.reuse_audit and out_dir.is_dir()):
            shutil.rmtree(out_dir, ignore_errors=True)
            tunelab(
                "data",
                "clean",
                str(WORK / f"noisy-{ns}.tsv"),
                "data.text_column=sentence",
                "--out",
                str(out_dir),
                "--fix",
                fix,
                "--from-audit",
                str(WORK / f"audit-{ns}"),
                "--skip",
                "near_duplicates,leakage,language",
            )
        kept[folder] = out_dir / f"noisy-{ns}.tsv"
    cleaned = kept["cleaned"]
    kept_rows = sum(1 for _ in cleaned.open(encoding="utf-8")) - 1
    changes = [json.loads(x) for x in (WORK / f"relabelled-{ns}" / "changes.jsonl").read_text().splitlines()]
    noisy_rows = list(csv.reader((WORK / f"noisy-{ns}.tsv").open(encoding="utf-8"), delimiter="\t"))[1:]
    _, flipped0 = audit_section(rows, ns, args, score_only=True)
    fixed = sum(1 for c in changes if c["line"] - 2 in flipped0)
    lines += [
        f"`tunelab data clean --fix label-errors` on flip seed {ns}'s file kept {kept_rows} of {len(rows)} rows; "
        f"`--fix relabel` changed {len(changes)} labels, {fixed} of them back to the original label "
        f"(of {len(noisy_rows)} rows)."
    ]
    results = REPO / "bench" / "results" / args.results
    results.write_text("\n".join(lines) + "\n")  # the audits' part now: training may not get to finish
    if not args.skip_training:
        lines += training_section(args, rows, ns, cleaned, kept_rows, kept["relabelled"])
        results.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def training_section(args, rows: list, ns: int, cleaned: Path, kept_rows: int, relabelled: Path) -> list[str]:
    seeds = [int(s) for s in args.seeds.split(",")]
    files = (
        ("clean", WORK / "clean.tsv"),
        (f"noisy{ns}", WORK / f"noisy-{ns}.tsv"),
        (f"cleaned{ns}", cleaned),
        (f"relabelled{ns}", relabelled),
    )
    acc = {name: [train(name, path, s, args.dev_rows, args.epochs) for s in seeds] for name, path in files}
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    lost = mean["clean"] - mean[f"noisy{ns}"]
    dev = f"first {args.dev_rows}" if args.dev_rows else "all 6,735"
    lines = [
        "",
        f"minilm-l6, full fine-tuning, {args.epochs} epoch(s), batch 32, lr 5e-5, max_length 64, training seeds "
        f"{args.seeds}; dev accuracy on the {dev} SST-2 dev rows:",
        "",
        "| training file | rows | dev accuracy (per seed) | mean | trained (wall time of `tunelab train`) |",
        "|---|---|---|---|---|",
    ]
    for (name, _), n in zip(files, (len(rows), len(rows), kept_rows, len(rows))):
        took = ", ".join(
            (WORK / f"run-{name}-e{args.epochs}-{s}" / "bench_seconds.txt").read_text().strip() + " s" for s in seeds
        )
        when = ", ".join(
            time.strftime(
                "%Y-%m-%d %H:%M",
                time.localtime((WORK / f"run-{name}-e{args.epochs}-{s}" / "metrics.json").stat().st_mtime),
            )
            for s in seeds
        )
        lines.append(
            f"| {name} | {n} | {', '.join(f'{a:.4f}' for a in acc[name])} | {mean[name]:.4f} | {when} ({took}) |"
        )
    lines.append("")
    for name in (f"cleaned{ns}", f"relabelled{ns}"):
        won = mean[name] - mean[f"noisy{ns}"]
        share = f"{won / lost:.2f}" if lost > 0 else "n/a (the noise cost nothing)"
        lines.append(
            f"{name}: accuracy lost to the noise {lost * 100:.2f} points; won back {won * 100:.2f} points "
            f"(share recovered: {share})."
        )
    return lines


if __name__ == "__main__":
    main()
