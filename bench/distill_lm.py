"""Knowledge distillation for a causal LM (issue 12's second bar), at a CPU-sized scale.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/distill_lm.py

Teacher: smollm2-135m (30 layers) with LoRA (r 16, all linear layers) on the first 400 Alpaca training records,
STEPS steps. Student: smollm2-135m with model.layers = every other layer (15 of 30), full fine-tuning, the same
records and the same number of steps, (a) on the labels alone (`tunelab train`) and (b) distilled
(`tunelab distill`, alpha 0.5, forward KL, T = 1, teacher top-64 per token, chunked). Dev: the first 100 records of
Alpaca dev.json; the metric is the dev loss (mean cross-entropy per answer token, the gold answer's, not the
teacher's). Results: bench/results/distill-lm.json; runs in runs/bench-distill-lm/.

    .venv/bin/python bench/distill_lm.py --student-steps 120   # the students only, longer; the same teacher
        -> bench/results/distill-lm-s120.json, runs a_labels-s120 and b_kd-s120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "alpaca"
WORK = REPO / "runs" / "bench-distill-lm"
OUT = REPO / "bench" / "results" / "distill-lm.json"
STEPS = 40
COMMON = [
    "task=causal_lm",
    "task.eval_generations=0",
    "model.name=smollm2-135m",
    "model.max_length=256",
    f"data.train={DATA / 'train.json'}",
    f"data.dev={DATA / 'dev.json'}",
    "data.max_train_rows=400",
    "data.max_dev_rows=100",
    "data.on_error=skip",
    f"train.max_steps={STEPS}",
    f"train.eval_every={STEPS}",
    "train.batch_size=8",
    "train.seed=42",
    "train.threads=2",
    "train.keep_checkpoints=none",
    "train.warmup_fraction=0.05",
]
STUDENT = [f"model.layers=[{','.join(str(i) for i in range(0, 30, 2))}]", "method=full", "train.lr=1e-4"]


def sh(args: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    print("$ tunelab " + " ".join(args), flush=True)
    start = time.perf_counter()
    proc = subprocess.run([str(REPO / ".venv/bin/tunelab"), *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    print(proc.stderr.strip().splitlines()[-1], flush=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student-steps", type=int, default=STEPS, help=f"steps of both students (default {STEPS})")
    n = ap.parse_args().student_steps
    tag = "" if n == STEPS else f"-s{n}"
    steps = [f"train.max_steps={n}", f"train.eval_every={n}"]
    WORK.mkdir(parents=True, exist_ok=True)
    teacher = WORK / "teacher"
    runs = {
        "teacher": [
            "train",
            *COMMON,
            "method=lora",
            "method.r=16",
            "method.target_modules=all-linear",
            "train.lr=1e-3",
        ],
        f"a_labels{tag}": ["train", *COMMON, *STUDENT, *steps],
        f"b_kd{tag}": [
            "distill",
            *COMMON,
            *STUDENT,
            *steps,
            f"distill.teacher={teacher}",
            "distill.alpha=0.5",
            "distill.temperature=1.0",
            "distill.top_k=64",
        ],
    }
    out = OUT.with_name(f"distill-lm{tag}.json")
    data = json.loads(out.read_text()) if out.is_file() else {}
    for name, args in runs.items():
        if not (WORK / name / "metrics.json").is_file():
            data[f"{name}_seconds"] = round(sh([*args, f"output_dir={WORK / name}", "--quiet"]))
        data[f"{name}_dev_loss"] = json.loads((WORK / name / "metrics.json").read_text())["dev"]["loss"]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
