"""Train the NER model that `tunelab data scrub --ner` uses for PERSON/ORGANIZATION/LOCATION, then evaluate the
scrubber on the presidio-research synthetic PII set.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/pii_ner.py            # train (skipped if done) + evaluate
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/pii_ner.py --eval-only

Two models, both trained with `tunelab train` (the code path users run):
  1. wikiann: minilm-l6, full fine-tuning on all 20,000 WikiANN-en training sentences, 2 epochs.
  2. mixed: model 1 fine-tuned further (1 epoch, lr 1e-4) on WNUT-17's 3,394 training tweets (person -> PER,
     location -> LOC, corporation and group -> ORG, product and creative-work -> O) plus the first 3,000 WikiANN
     sentences: WikiANN sentences are title-like fragments, and a model trained on them alone mistakes names in
     running, conversational text for organisations.
Both are evaluated; results go to bench/results/pii.md (the table the README quotes).
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
MIXED = REPO / "runs" / "wikiann-wnut-ner"
WNUT_MAP = {"person": "PER", "location": "LOC", "corporation": "ORG", "group": "ORG"}


def mixed_file() -> Path:
    """WNUT-17 train with its types mapped to PER/LOC/ORG, then the first 3,000 WikiANN sentences (prefix stripped)."""
    out = REPO / "runs" / "wikiann-wnut-train.conll"
    blocks, lines = [], []
    for line in (DATA / "wnut17" / "train.conll").read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():  # separators may hold a stray TAB
            if lines:
                blocks.append("\n".join(lines))
            lines = []
            continue
        token, _, tag = line.rpartition("\t")
        kind = tag[2:]
        lines.append(f"{token}\t{tag[:2] + WNUT_MAP[kind] if kind in WNUT_MAP else 'O'}")
    wiki = (DATA / "wikiann-en" / "train").read_text(encoding="utf-8").split("\n\n")[:3000]
    blocks += ["\n".join(ln.removeprefix("en:") for ln in b.splitlines()) for b in wiki if b.strip()]
    out.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return out


def tunelab(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([str(REPO / ".venv" / "bin" / "tunelab"), *args], check=True, env=env)


def stripped_dev() -> Path:
    """The first 2,000 WikiANN dev sentences without the en: prefix (scores both runs the same way)."""
    out = REPO / "runs" / "wikiann-dev2000.conll"
    blocks = (DATA / "wikiann-en" / "dev").read_text(encoding="utf-8").split("\n\n")[:2000]
    out.write_text(
        "\n\n".join("\n".join(ln.removeprefix("en:") for ln in b.splitlines()) for b in blocks) + "\n", encoding="utf-8"
    )
    return out


def dev_f1(run: Path) -> float:
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "tunelab"), "eval", str(run), "--data", str(stripped_dev())],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return json.loads(done.stdout)["f1"]


def name_sweep(run: Path, thresholds) -> list:
    """Per-type scores of the names alone at each name threshold (in-process: the model is loaded once)."""
    sys.path.insert(0, str(REPO))
    from tunelab.data import scrub

    data = scrub.read_annotated(str(DATA / "pii" / "synth_dataset_v2.json"))
    kinds = ("PERSON", "ORGANIZATION", "LOCATION")
    gold = [[x for x in g if x[2] in kinds] for _, g in data]
    det = scrub.Detector(kinds, str(run))
    out = []
    for thr in thresholds:
        det.name_threshold = thr
        out.append((thr, scrub.score(gold, det.names([t for t, _ in data]), kinds)))
    return out


def evaluate(run: Path, name: str) -> tuple[dict, float]:
    out = REPO / "runs" / f"pii-eval-{name}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    start = time.time()
    tunelab(
        "data", "scrub", "--evaluate", str(DATA / "pii" / "synth_dataset_v2.json"), "--ner", str(run), "--out", str(out)
    )
    return json.loads((out / "evaluation.json").read_text()), time.time() - start


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
    if not args.eval_only and not (MIXED / "metrics.json").is_file():
        tunelab(
            "train",
            "examples/ner/wikiann.yaml",
            f"output_dir={MIXED}",
            f"model.name={RUN / 'model'}",
            f"data.train={mixed_file()}",
            f"data.dev={stripped_dev()}",
            "task.token_prefix=null",
            "data.max_train_rows=null",
            "train.epochs=1",
            "train.lr=1e-4",
            "train.precision=auto",
            "train.threads=2",
            "--quiet",
        )
    train_s = time.time() - start
    lines = [
        "# PII scrubbing: per-type precision/recall on presidio-research synth_dataset_v2.json (1,500 texts)",
        "",
        f"Command: `flock /tmp/tunelab-cpu.lock .venv/bin/python bench/pii_ner.py` ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)"
        + (f"; training took {train_s:.0f} s" if train_s > 60 else ""),
        "",
        "Match rule: a prediction counts if it overlaps a gold span of the same type by at least half of the shorter span.",
        "The pattern types do not depend on the NER run; PERSON, ORGANIZATION and LOCATION come from it.",
    ]
    for run, name, what in (
        (RUN, "wikiann", "minilm-l6 fine-tuned on WikiANN-en (20,000 sentences, 2 epochs)"),
        (MIXED, "mixed", "the WikiANN model fine-tuned further on WNUT-17 (mapped) + 3,000 WikiANN sentences"),
    ):
        if not (run / "metrics.json").is_file():
            continue
        result, eval_s = evaluate(run, name)
        f1 = dev_f1(run)
        lines += [
            "",
            f"## NER run `{name}`: {what}",
            "",
            f"WikiANN dev entity F1 {f1:.3f} (`tunelab eval` on the first 2,000 dev sentences); PII evaluation took {eval_s:.0f} s.",
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
    if (MIXED / "metrics.json").is_file():
        lines += [
            "",
            "## Name threshold (`--name-threshold`) with the `mixed` run",
            "",
            "| threshold | PERSON precision | PERSON recall | ORGANIZATION precision | ORGANIZATION recall | LOCATION precision | LOCATION recall |",
            "|---|---|---|---|---|---|---|",
        ]
        for thr, per in name_sweep(MIXED, (0.5, 0.3, 0.2)):
            cells = " | ".join(
                f"{per[t]['precision']:.3f} | {per[t]['recall']:.3f}" for t in ("PERSON", "ORGANIZATION", "LOCATION")
            )
            lines.append(f"| {thr} | {cells} |")
    (REPO / "bench" / "results" / "pii.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
