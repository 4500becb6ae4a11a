"""Issue 19's acceptance runs at a CPU-sized scale (each part is one locked job of well under 15 minutes):

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py translation   # Multi30k en->de, smollm2 LoRA
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py scitldr       # SciTLDR-A, smollm2 LoRA vs untuned
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py dapt          # MiniLM MLM on AG News, then 1k-row cls
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py bert2bert     # Multi30k en->de, MiniLM BERT2BERT

Each part runs `tunelab train` (the commands are printed and recorded) and writes
bench/results/<cpu kind>/seq2seq-<part>.json and .md with the machine, the commands, the sizes and the numbers.
Sizes are subsets chosen to fit the session's CPU budget (2 shared cores); they are stated in each results file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, header, load_average, machine, results_dir  # noqa: E402

WORK = ROOT / "runs" / "bench-seq2seq"
M30K, TLDR, AG = DATA / "multi30k", DATA / "scitldr", DATA / "agnews"
BASE = ["train.threads=2", "train.keep_checkpoints=none", "speed.cache=false", "train.seed=42"]

PARTS = {
    "translation": [
        {
            "name": "smollm2-135m LoRA, Multi30k en->de",
            "args": [
                "task=seq2seq",
                "model.name=smollm2-135m",
                "task.languages=[en,de]",
                "task.prompt=Translate English to German: {source}",
                f"data.train={M30K / 'train.en.gz'}",
                f"data.dev={M30K / 'val.en.gz'}",
                "data.max_train_rows=3200",
                "data.max_dev_rows=200",
                "task.eval_generations=200",
                "task.eval_max_new_tokens=48",
                "task.baseline=false",
                "model.max_length=128",
                "method=lora",
                "method.r=16",
                "train.lr=2e-3",
                "train.batch_size=16",
                "train.max_steps=170",
                "train.eval_every=170",
                "train.warmup_fraction=0.05",
                "generation.batch_size=25",
            ],
        }
    ],
    "bert2bert": [
        {
            "name": "minilm-l6 BERT2BERT (full), Multi30k en->de",
            "args": [
                "task=seq2seq",
                "model.name=minilm-l6",
                "task.languages=[en,de]",
                f"data.train={M30K / 'train.en.gz'}",
                f"data.dev={M30K / 'val.en.gz'}",
                "data.max_train_rows=8000",
                "data.max_dev_rows=200",
                "task.eval_generations=200",
                "task.eval_max_new_tokens=48",
                "task.baseline=false",
                "model.max_length=64",
                "task.max_target_length=64",
                "method=full",
                "train.lr=1e-4",
                "train.batch_size=32",
                "train.max_steps=250",
                "train.eval_every=250",
                "generation.batch_size=50",
            ],
        }
    ],
    "scitldr": [
        {
            "name": "smollm2-135m LoRA, SciTLDR-A (baseline = the untuned model, zero-shot)",
            "args": [
                "task=seq2seq",
                "model.name=smollm2-135m",
                "task.prompt=Summarize this paper abstract in one sentence.\n\n{source}",
                "task.targets=each",
                f"data.train={TLDR / 'train.jsonl'}",
                f"data.dev={TLDR / 'dev.jsonl'}",
                "data.max_train_rows=100",
                "data.max_dev_rows=40",
                "task.eval_generations=40",
                "task.eval_max_new_tokens=40",
                "task.baseline=true",
                "model.max_length=320",
                "method=lora",
                "method.r=16",
                "train.lr=1e-3",
                "train.batch_size=8",
                "train.max_steps=30",
                "train.eval_every=30",
                "train.warmup_fraction=0.05",
                "generation.batch_size=20",
            ],
        }
    ],
}
DAPT_MLM = [
    "task=masked_lm",
    "model.name=minilm-l6",
    f"data.train={AG / 'train.tsv'}",
    "data.text_column=0",
    "data.has_header=false",
    "data.max_dev_rows=300",
    "model.max_length=64",
    "method=full",
    "train.lr=1e-4",
    "train.batch_size=32",
    "train.max_steps=120",
    "train.eval_every=120",
]
CLS_ROWS = 1000


def sh(args: list[str], out: Path, log: list) -> dict:
    """Run `tunelab train ARGS output_dir=OUT`; returns its metrics.json and records the command and seconds."""
    cmd = ["tunelab", "train", "--quiet", *args, f"output_dir={out}"]
    shown = " ".join(a if " " not in a and "\n" not in a else json.dumps(a) for a in cmd)
    print("$ " + shown, flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([str(ROOT / ".venv/bin/tunelab"), *cmd[1:]], env=env, capture_output=True, text=True)
    seconds = round(time.perf_counter() - start, 1)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}) after {seconds} s:\n{proc.stderr[-4000:]}")
    log.append({"command": shown, "seconds": seconds})
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def scores(split: dict) -> dict:
    keys = ("loss", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "perplexity", "accuracy", "macro_f1")
    return {k: round(split[k], 4) for k in keys if isinstance(split.get(k), float)}


def run_generation_part(part: str, stamp: str) -> tuple[list, list]:
    rows, log = [], []
    for spec in PARTS[part]:
        m = sh(spec["args"] + BASE, WORK / f"{part}-{stamp}", log)
        row = {"run": spec["name"], "dev": scores(m["dev"]), "train_seconds": m["train_seconds"], "steps": m["steps"]}
        if "baseline" in m:
            row["untuned"] = scores(m["baseline"])
        row["samples"] = m["dev"].get("samples", [])[:3]
        rows.append(row)
    return rows, log


def run_dapt(stamp: str) -> tuple[list, list]:
    """MLM on AG News text (labels unused), then 3 seeds x (with, without DAPT) classifiers on the first 1,000 rows,
    evaluated on the last 500 rows of the same file (never trained on)."""
    log: list = []
    rows_dir = Path("/tmp/tunelab-bench-seq2seq") / f"dapt-data-{stamp}"  # slices of the shared data, not in the repo
    rows_dir.mkdir(parents=True, exist_ok=True)
    lines = (AG / "train.tsv").read_text(encoding="utf-8").splitlines()
    (rows_dir / "train.tsv").write_text("\n".join(lines[:CLS_ROWS]) + "\n", encoding="utf-8")
    (rows_dir / "dev.tsv").write_text("\n".join(lines[-500:]) + "\n", encoding="utf-8")
    # the MLM text: every AG News text except the classifier's dev rows
    (rows_dir / "mlm.tsv").write_text("\n".join(lines[:-500]) + "\n", encoding="utf-8")
    mlm_args = [a if not a.startswith("data.train=") else f"data.train={rows_dir / 'mlm.tsv'}" for a in DAPT_MLM]
    mlm_run = WORK / f"dapt-mlm-{stamp}"
    mlm = sh(mlm_args + BASE, mlm_run, log)
    cls = [
        "task=classification",
        f"data.train={rows_dir / 'train.tsv'}",
        f"data.dev={rows_dir / 'dev.tsv'}",
        "data.text_column=0",
        "data.label_column=1",
        "data.has_header=false",
        "model.max_length=64",
        "method=full",
        "train.lr=5e-5",
        "train.batch_size=32",
        "train.epochs=2",
        "train.keep_checkpoints=none",
        "train.threads=2",
        "speed.cache=false",
    ]
    out = [{"run": "MLM step (minilm-l6, full)", "dev": scores(mlm["dev"]), "train_seconds": mlm["train_seconds"]}]
    for label, model in (("no DAPT", "minilm-l6"), ("DAPT", str(mlm_run))):
        accs = []
        for seed in (1, 2, 3):
            m = sh(
                [*cls, f"model.name={model}", f"train.seed={seed}"], WORK / f"dapt-cls-{label[:2]}-{seed}-{stamp}", log
            )
            accs.append(m["dev"]["accuracy"])
        out.append({"run": f"classifier, {label}", "accuracy_per_seed": accs, "accuracy_mean": sum(accs) / 3})
    return out, log


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else ""
    if part not in (*PARTS, "dapt"):
        sys.exit(f"usage: bench/seq2seq.py {{{'|'.join([*PARTS, 'dapt'])}}}")
    WORK.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    before = load_average()
    rep = machine(2)
    rows, log = run_dapt(stamp) if part == "dapt" else run_generation_part(part, stamp)
    folder = results_dir()
    result = {
        "part": part,
        "machine": rep,
        "load_before": before,
        "load_after": load_average(),
        "runs": rows,
        "commands": log,
    }
    (folder / f"seq2seq-{part}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    md = header(
        rep, before, result["load_after"], f"flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py {part}"
    )
    md += ["Runs (each `tunelab train` command as run):", ""] + [f"- `{c['command']}` ({c['seconds']} s)" for c in log]
    md += ["", "Results:", "", "```json", json.dumps(rows, indent=1, ensure_ascii=False), "```", ""]
    (folder / f"seq2seq-{part}.md").write_text("\n".join(md), encoding="utf-8")
    print(json.dumps(rows, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
