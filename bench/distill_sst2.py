"""Knowledge distillation on SST-2 (issue 12's acceptance): teacher minilm-l6, student = 3 of its 6 layers.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/distill_sst2.py --stage teacher
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/distill_sst2.py --stage students [--only a_labels,c_kd_unlabelled]
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/distill_sst2.py --stage speed

Teacher: minilm-l6, full fine-tuning on the first 4,000 rows of SST-2 train.tsv. Students: minilm-l6 with
model.layers [0, 2, 4] (initialised from those layers of the pretrained model), trained the same way as
  (a) on the 4,000 labels alone (`tunelab train`),
  (b) with KD on the same rows (`tunelab distill`, alpha 0.5, forward KL, T = 2),
  (c) as (b) plus the next 20,000 SST-2 training phrases as unlabelled transfer text (their labels are dropped).
All runs: batch 32, lr 1e-4 (students) / 5e-5 (teacher), seed 42, 3 epochs (teacher, a, b; 375 steps) or
1 epoch over the 24,000 rows of (c) (750 steps), model selection and the reported
accuracy on shared dev.tsv (6,735 rows; selection on the same dev file, as the issue's bars are stated there).
A second, stronger teacher (`--tag t2`: lr 1e-4, 5 epochs, same rows) gives runs teacher_t2, b_kd_t2 and
c_kd_unlabelled_t2 (the labels-only student (a) does not depend on the teacher):
    flock /tmp/tunelab-cpu.lock sh -c ".venv/bin/python bench/distill_sst2.py --stage teacher --tag t2 &&
        .venv/bin/python bench/distill_sst2.py --stage students --only b_kd,c_kd_unlabelled --tag t2"
Speed: rows/s of `predict` (batched, torch, 2 threads) on dev.tsv texts, teacher vs student, best of 3.
Results: bench/results/distill-sst2.md (and the JSON next to it); runs in runs/bench-distill-sst2/.
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
DATA = REPO.parent / "shared" / "data" / "sst2"
WORK = REPO / "runs" / "bench-distill-sst2"
OUT = REPO / "bench" / "results" / "distill-sst2.json"
COMMON = [
    "task=classification",
    "model.name=minilm-l6",
    "model.max_length=64",
    f"data.train={WORK / 'train4000.tsv'}",
    f"data.dev={DATA / 'dev.tsv'}",
    "data.text_column=sentence",
    "data.label_column=label",
    "method=full",
    "train.epochs=3",
    "train.batch_size=32",
    "train.seed=42",
    "train.threads=2",
    "train.keep_checkpoints=none",
]
STUDENT = ["model.layers=[0,2,4]", "train.lr=1e-4"]
KD = ["distill.alpha=0.5", "distill.temperature=2.0", "distill.divergence=forward_kl"]


def sh(args: list[str]) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    print("$ tunelab " + " ".join(args), flush=True)
    start = time.perf_counter()
    proc = subprocess.run([str(REPO / ".venv/bin/tunelab"), *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    print(proc.stderr.strip().splitlines()[-1], flush=True)
    return time.perf_counter() - start


def slices() -> None:
    """train4000.tsv (rows 1..4000 of train.tsv) and unlabelled20000.tsv (rows 4001..24000, labels dropped)."""
    WORK.mkdir(parents=True, exist_ok=True)
    lines = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    (WORK / "train4000.tsv").write_text("\n".join([header] + rows[:4000]) + "\n", encoding="utf-8")
    texts = [r.split("\t")[0] for r in rows[4000:24000]]
    (WORK / "unlabelled20000.tsv").write_text("\n".join(["sentence"] + texts) + "\n", encoding="utf-8")


def accuracy(run: str) -> float:
    return json.loads((WORK / run / "metrics.json").read_text())["dev"]["accuracy"]


def record(update: dict) -> dict:
    data = json.loads(OUT.read_text()) if OUT.is_file() else {}
    data.update(update)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    return data


# teacher variants: "" = the first teacher (lr 5e-5, 3 epochs); "t2" = a stronger one (lr 1e-4, 5 epochs)
TEACHERS = {"": ["train.lr=5e-5"], "t2": ["train.lr=1e-4", "train.epochs=5"]}


def teacher(tag: str = "") -> None:
    slices()
    name = f"teacher{'_' + tag if tag else ''}"
    if not (WORK / name / "metrics.json").is_file():
        secs = sh(["train", *COMMON, *TEACHERS[tag], f"output_dir={WORK / name}", "--quiet"])
        record({f"{name}_seconds": round(secs)})
    record({f"{name}_accuracy": accuracy(name)})


def students(only: list[str], tag: str = "") -> None:
    suffix = f"_{tag}" if tag else ""
    teacher_dir = WORK / f"teacher{suffix}"
    runs = {
        "a_labels": ["train", *COMMON, *STUDENT],
        "b_kd": ["distill", *COMMON, *STUDENT, f"distill.teacher={teacher_dir}", *KD],
        "c_kd_unlabelled": [
            "distill",
            *COMMON,
            *STUDENT,
            f"distill.teacher={teacher_dir}",
            *KD,
            f"distill.unlabelled={WORK / 'unlabelled20000.tsv'}",
            "train.epochs=1",  # one pass over 24,000 rows = 750 steps (2x the labelled runs' 375)
        ],
    }
    for name, args in runs.items():
        if only and name not in only:
            continue
        name = name if name == "a_labels" else name + suffix  # (a) does not depend on the teacher
        if not (WORK / name / "metrics.json").is_file():
            secs = sh([*args, f"output_dir={WORK / name}", "--quiet"])
            record({f"{name}_seconds": round(secs)})
        record({f"{name}_accuracy": accuracy(name)})


def speed() -> None:
    """Predict throughput (rows/s) of teacher and student (a) on the dev texts, best of 3, 2 threads."""
    import torch

    sys.path.insert(0, str(REPO))
    from tunelab import runs
    from tunelab.data.sources import Row

    torch.set_num_threads(2)
    texts = [ln.split("\t")[0] for ln in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:3001]]
    rows = [Row(t, None, None, i) for i, t in enumerate(texts)]
    out = {}
    for name in ("teacher", "a_labels"):
        run = runs.load_run(WORK / name)
        run.task.predict(run, rows[:64])  # warm-up
        best = min(_timed(run, rows) for _ in range(3))
        out[f"{name}_rows_per_s"] = round(len(rows) / best, 1)
    out["speedup"] = round(out["a_labels_rows_per_s"] / out["teacher_rows_per_s"], 2)
    out["cpu"] = platform.processor() or _cpu()
    record(out)


def _timed(run, rows) -> float:
    start = time.perf_counter()
    run.task.predict(run, rows)
    return time.perf_counter() - start


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--stage", choices=["teacher", "students", "speed"], required=True)
    p.add_argument("--only", default="", help="students: comma-separated runs (a_labels,b_kd,c_kd_unlabelled)")
    p.add_argument("--tag", default="", choices=sorted(TEACHERS), help="teacher variant (t2: lr 1e-4, 5 epochs)")
    args = p.parse_args()
    if args.stage == "students":
        students([n for n in args.only.split(",") if n], args.tag)
    elif args.stage == "teacher":
        teacher(args.tag)
    else:
        speed()
    print(json.dumps(json.loads(OUT.read_text()), indent=1))


if __name__ == "__main__":
    main()
