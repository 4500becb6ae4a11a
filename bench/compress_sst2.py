"""Acceptance figures for compression and ONNX export on SST-2 with MiniLM-L6 (issue 16).

Trains examples/compress/sst2-minilm.yaml (3,000 training rows, 2,000 dev rows) once, then runs the real
commands on it, each in a fresh process like a user would, and writes bench/results/compress-sst2.md from the
cost.json files they store:

    tunelab quantize RUN OUT --scheme int8-dynamic | int8-weight-only | int4-weight-only   (2 threads and 1 thread)
    tunelab export RUN OUT --format onnx
    tunelab prune RUN OUT --method structured --heads 0.3 [--ffn 0.3] --recover-steps 150
    tunelab prune RUN OUT --method magnitude --sparsity 0.5 --recover-steps 150

Run it on an otherwise idle machine, under the shared CPU lock, one stage at a time if needed:

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/compress_sst2.py [--stages train,quantize,onnx,prune,report]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench-compress"
SOURCE = RUNS / "sst2-minilm"
RESULT = ROOT / "bench" / "results" / "compress-sst2.md"
TUNELAB = [str(ROOT / ".venv" / "bin" / "tunelab")]

STEPS = {  # folder -> command after RUN OUT
    "int8-dynamic": ["quantize", "--scheme", "int8-dynamic", "--threads", "2"],
    "int8-dynamic-1thread": ["quantize", "--scheme", "int8-dynamic", "--threads", "1"],
    "int8-weight-only": ["quantize", "--scheme", "int8-weight-only", "--threads", "2"],
    "int4-weight-only": ["quantize", "--scheme", "int4-weight-only", "--threads", "2"],
    "onnx": ["export", "--format", "onnx", "--threads", "2"],
    "onnx-1thread": ["export", "--format", "onnx", "--threads", "1"],
    "heads30-recovered": [
        "prune",
        "--method",
        "structured",
        "--heads",
        "0.3",
        "--recover-steps",
        "150",
        "--threads",
        "2",
    ],
    "heads30-ffn30-recovered": [
        "prune",
        "--method",
        "structured",
        "--heads",
        "0.3",
        "--ffn",
        "0.3",
        "--recover-steps",
        "150",
        "--threads",
        "2",
    ],
    "magnitude50-recovered": [
        "prune",
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--recover-steps",
        "150",
        "--threads",
        "2",
    ],
}
LATENCY = ROOT / "bench" / "results" / "compress-sst2-latency.json"
STAGES = {
    "quantize": ["int8-dynamic", "int8-dynamic-1thread", "int8-weight-only", "int4-weight-only"],
    "onnx": ["onnx", "onnx-1thread"],
    "prune": ["heads30-recovered", "heads30-ffn30-recovered", "magnitude50-recovered"],
}


def sh(cmd: list[str]) -> float:
    print("+ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def train() -> None:
    if (SOURCE / "metrics.json").is_file():
        print(f"{SOURCE} exists; not retraining")
        return
    sh(TUNELAB + ["train", "--quiet", "examples/compress/sst2-minilm.yaml"])


def step(name: str) -> None:
    out = RUNS / name
    if (out / "cost.json").is_file():
        print(f"{out} exists; keeping it")
        return
    cmd = STEPS[name]
    sh(TUNELAB + [cmd[0], str(SOURCE.relative_to(ROOT)), str(out.relative_to(ROOT)), *cmd[1:]])


def latency() -> None:
    """Re-time every result against the source interleaved (cost.paired_latency), 1 thread: robust on a busy machine."""
    import torch

    from tunelab import runs
    from tunelab.compress import cost

    torch.set_num_threads(1)
    source = runs.load_run(SOURCE)
    dev = cost.dev_data(source.cfg, source.tokenizer, source.labels, print, max_rows=256)
    out = {"threads": 1, "load_average_before": list(os.getloadavg())}
    for name in STEPS:
        if (RUNS / name / "cost.json").is_file() and not name.endswith("1thread"):
            result = runs.load_run(RUNS / name)
            out[name] = cost.paired_latency({"source": source.model, "result": result.model}, dev)
            print(name, out[name], flush=True)
    out["load_average_after"] = list(os.getloadavg())
    LATENCY.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


def row(name: str, rec: dict) -> str:
    s, r = rec["source"], rec["result"]
    acc = r["dev"].get("accuracy", float("nan"))
    d = 100 * (acc - s["dev"]["accuracy"])
    extra = ""
    if "parity" in rec and "max_abs_logit_diff" in rec["parity"]:
        extra = f"max abs logit diff {rec['parity']['max_abs_logit_diff']:.2e}"
    if "pruned" in rec:
        extra = f"{rec['pruned']}; params {s['parameters']:,} -> {r['parameters']:,}"
    return (
        f"| {name} | {rec['machine']['torch_threads']} | {s['dev']['accuracy']:.4f} | {acc:.4f} | {d:+.2f} | "
        f"{s['batch1_ms']:.2f} | {r['batch1_ms']:.2f} | **{s['batch1_ms'] / r['batch1_ms']:.2f}x** | "
        f"{r['batched_examples_per_s'] / s['batched_examples_per_s']:.2f}x | {s['size_mb']:.1f} -> {r['size_mb']:.1f} | {extra} |"
    )


def report() -> None:
    recs = {n: json.loads((RUNS / n / "cost.json").read_text()) for n in STEPS if (RUNS / n / "cost.json").is_file()}
    if not recs:
        sys.exit("no results yet")
    train_metrics = json.loads((SOURCE / "metrics.json").read_text())
    m = next(iter(recs.values()))["machine"]
    lines = [
        "# Compression and ONNX export: SST-2, MiniLM-L6 (issue 16)",
        "",
        f"Source run: `examples/compress/sst2-minilm.yaml` (full fine-tune, 3,000 SST-2 training rows, 3 epochs; "
        f"dev = first 2,000 rows of `sst2/dev.tsv`): dev accuracy {train_metrics['dev']['accuracy']:.4f}, "
        f"{train_metrics['train_seconds']} s of training.",
        f"Machine: {m['cpu']} ({' '.join(m['flags'])}); torch {m['versions']['torch']}; tcmalloc loaded: {m['tcmalloc_loaded']}; "
        f"fp32 matmul {m['matmul_gflops']['fp32']} GFLOP/s measured with the run. Each command measures the source and the result "
        "in the same process, back to back, with the thread count shown.",
        "",
        "Latency: batch 1 = median over the first 32 dev phrases, each alone (no padding); batched = the first 256 dev "
        "phrases in padded batches of 32, examples/s. Size = weight bytes (torch.save of the source's state dict; the "
        "result folder's weight files).",
        "",
        "| result | threads | source acc | result acc | diff (pt) | source b1 ms | result b1 ms | b1 speed-up | batched speed-up | size MB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [row(n, r) for n, r in recs.items()]
    if LATENCY.is_file():
        lat = json.loads(LATENCY.read_text())
        lines += [
            "",
            "## Latency re-measured interleaved, 1 thread (`--stages latency`)",
            "",
            "Source and result timed alternately, example by example (64 dev phrases x 3 rounds; 8 batches of 32 x 3 rounds), "
            f"so load from other processes hits both alike. Load average before/after: {lat['load_average_before']} / "
            f"{lat['load_average_after']}.",
            "",
            "| result | source b1 ms | result b1 ms | b1 speed-up | source batch-32 ms | result batch-32 ms | batched speed-up |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in lat.items():
            if isinstance(v, dict):
                a, b = v["source"], v["result"]
                lines.append(
                    f"| {name} | {a['batch1_ms']:.2f} | {b['batch1_ms']:.2f} | **{a['batch1_ms'] / b['batch1_ms']:.2f}x** | "
                    f"{a['batch_ms']:.1f} | {b['batch_ms']:.1f} | {a['batch_ms'] / b['batch_ms']:.2f}x |"
                )
    lines += ["", "## Commands", "", "```", "tunelab train examples/compress/sst2-minilm.yaml"]
    lines += [
        f"tunelab {STEPS[n][0]} runs/bench-compress/sst2-minilm runs/bench-compress/{n} {' '.join(STEPS[n][1:])}"
        for n in recs
    ]
    lines += ["```", ""]
    for n in STAGES["prune"]:
        if n in recs:
            lines += [
                f"## Accuracy vs sparsity: {n} (before recovery; the recovered figure is in the table above)",
                "",
                "| level | dev accuracy | parameters |",
                "|---|---|---|",
            ]
            lines += [f"| {r['level']:.2f} | {r['accuracy']:.4f} | {r['parameters']:,} |" for r in recs[n]["sweep"]]
            lines += [""]
    RESULT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(RESULT.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="train,quantize,onnx,prune,latency,report")
    args = ap.parse_args()
    for stage in args.stages.split(","):
        if stage == "train":
            train()
        elif stage == "latency":
            latency()
        elif stage == "report":
            report()
        else:
            for name in STAGES[stage]:
                step(name)


if __name__ == "__main__":
    main()
