"""Train the NER model that `tunelab data scrub --ner` uses for PERSON/ORGANIZATION/LOCATION, then evaluate the
scrubber on the presidio-research synthetic PII set.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/pii_ner.py            # train (skipped if done) + evaluate
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/pii_ner.py --eval-only

The model: minilm-l6, full fine-tuning on all 20,000 WikiANN-en training sentences, 2 epochs (tunelab train,
the same code path users run). Results go to bench/results/pii.md (the table the README quotes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RUN = REPO / "runs" / "wikiann-ner"
OUT = REPO / "runs" / "pii-eval"


def tunelab(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([str(REPO / ".venv" / "bin" / "tunelab"), *args], check=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("--epochs", default="2")
    args = ap.parse_args()
    start = time.time()
    if not args.eval_only and not (RUN / "metrics.json").is_file():
        tunelab(
            "train",
            "examples/ner/wikiann.yaml",
            f"output_dir={RUN}",
            "data.max_train_rows=null",
            f"train.epochs={args.epochs}",
            "train.precision=auto",
            "train.threads=2",
            "--quiet",
        )
    train_s = time.time() - start
    if OUT.exists():
        import shutil

        shutil.rmtree(OUT)
    start = time.time()
    tunelab(
        "data", "scrub", "--evaluate", str(DATA / "pii" / "synth_dataset_v2.json"), "--ner", str(RUN), "--out", str(OUT)
    )
    eval_s = time.time() - start
    result = json.loads((OUT / "evaluation.json").read_text())
    dev = json.loads((RUN / "metrics.json").read_text())["dev"]
    lines = [
        "# PII scrubbing: per-type precision/recall on presidio-research synth_dataset_v2.json (1,500 texts)",
        "",
        f"Command: `flock /tmp/tunelab-cpu.lock .venv/bin/python bench/pii_ner.py` ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)",
        "",
        f"NER run: minilm-l6 full fine-tune on WikiANN-en train (20,000 sentences, {args.epochs} epochs); "
        f"WikiANN dev entity F1 {dev['f1']:.3f} (first 2,000 dev sentences)."
        + (f" Training took {train_s:.0f} s." if train_s > 60 else ""),
        f"Evaluation ({eval_s:.0f} s): {result['match_rule']}.",
        "",
        "| type | gold | found | precision | recall |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t} | {m['gold']} | {m['predicted']} | {m['precision']:.3f} | {m['recall']:.3f} |"
        for t, m in result["per_type"].items()
    ]
    lines += [
        "",
        "Annotated but not detected by tunelab: "
        + ", ".join(f"{k} ({v})" for k, v in result["not_detected_types"].items()),
    ]
    (REPO / "bench" / "results" / "pii.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
