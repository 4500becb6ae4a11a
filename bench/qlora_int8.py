"""LoRA on an int8 frozen base vs the fp32 base: memory, speed and dev loss (issue 16).

Trains examples/compress/smollm2-lora.yaml twice, each in its own process, with the same data, seed and steps:
method.name=lora (fp32 base) and method.name=qlora (method.base=int8: the base's linear weights int8, torchao).
Each child records: the bytes its model's weights take in memory (quantized tensors at their stored size), its
peak RSS while training (sampled every 20 ms from /proc/self/status, from the first step to the last), the whole
process's peak RSS, training seconds and the final dev loss. Writes bench/results/qlora-int8.md.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/qlora_int8.py [--steps 30] [--methods lora,qlora]

On a shared 2-core machine each side takes ~5 minutes at 30 steps: run ``--methods lora`` and ``--methods qlora`` as
two commands; the second writes the report from both records.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench-qlora"
RESULT = ROOT / "bench" / "results" / "qlora-int8.md"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def weight_mb(model) -> float:
    """Memory of parameters and buffers; a quantized tensor counts its stored pieces (int8 data + scales)."""
    import torch

    # dedupe by the parameter/buffer object (tied weights are one object); ``t.data`` makes a new short-lived object on
    # every access, so its id can be reused by the next one and must not be the key
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        data = t.data if isinstance(t, torch.nn.Parameter) else t
        if type(data) is torch.Tensor:
            total += data.numel() * data.element_size()
        else:  # torchao tensor subclass: its inner tensors
            names, _ = data.__tensor_flatten__()
            total += sum(getattr(data, n).numel() * getattr(data, n).element_size() for n in names)
    return total / 2**20


def child(method: str, steps: int) -> None:
    """Train one side in this process and print its record as JSON on the last line."""
    from tunelab import config
    from tunelab.recipes import finetune
    from tunelab.training.callbacks import Callback

    out = RUNS / method
    cfg = config.load(
        ROOT / "examples/compress/smollm2-lora.yaml",
        [f"output_dir={out}", f"method.name={method}", f"train.max_steps={steps}", "speed.cache=false"],
    )
    state = {"peak": 0.0, "on": False, "weights": None}

    def sample() -> None:
        while True:
            if state["on"]:
                state["peak"] = max(state["peak"], rss_mb())
            time.sleep(0.02)

    class Watch(Callback):
        def on_step_begin(self, ctx):
            if not state["on"]:
                state["weights"] = weight_mb(ctx.model)
                state["start_rss"] = rss_mb()
                state["on"] = True

    threading.Thread(target=sample, daemon=True).start()
    final = finetune.run(cfg, quiet=True, log=lambda m: print(m, file=sys.stderr), callbacks=[Watch()])
    state["on"] = False
    print(
        json.dumps(
            {
                "method": method,
                "dev_loss": final["dev"]["loss"],
                "train_seconds": final["train_seconds"],
                "steps": final["steps"],
                "weights_mb": round(state["weights"], 1),
                "rss_at_first_step_mb": round(state["start_rss"], 1),
                "peak_rss_training_mb": round(state["peak"], 1),
                "peak_rss_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "trainable_parameters": final["trainable_parameters"],
            }
        )
    )


def weights_only(steps: int) -> None:
    """Rebuild each side's model exactly as training starts it (base + method.apply) and store its weights' memory."""
    from tunelab import config, runs
    from tunelab.methods import METHODS

    for method in ("lora", "qlora"):
        cfg = config.load(ROOT / "examples/compress/smollm2-lora.yaml", [f"method.name={method}"])
        _, model, head = runs.build_base(cfg, None)
        model = METHODS[method].apply(model, cfg.method, head)
        path = RUNS / f"{method}.record.json"
        record = json.loads(path.read_text(encoding="utf-8"))
        record["weights_mb"] = round(weight_mb(model), 1)
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(method, record["weights_mb"], flush=True)
        del model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument(
        "--methods",
        default="lora,qlora",
        help="sides to (re)train now; each record is kept in runs/bench-qlora/METHOD.record.json, so the two sides can "
        "run as separate commands (each under the shared machine's 10-minute slot); the report needs both",
    )
    ap.add_argument(
        "--weights-only",
        action="store_true",
        help="re-measure only the weights' memory of each side (base + method applied, no training) into the records",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.steps)
    if args.weights_only:
        return weights_only(args.steps)
    import shutil

    for method in [m for m in args.methods.split(",") if m]:
        shutil.rmtree(RUNS / method, ignore_errors=True)
        out = subprocess.run(
            [sys.executable, __file__, "--child", method, "--steps", str(args.steps)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        record = json.loads(out.stdout.strip().splitlines()[-1])
        (RUNS / f"{method}.record.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(record, flush=True)
    paths = [RUNS / f"{m}.record.json" for m in ("lora", "qlora")]
    if not all(p.is_file() for p in paths):
        print("report waits for both sides: " + ", ".join(str(p) for p in paths if not p.is_file()))
        return
    records = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    if any(r["steps"] != args.steps for r in records):
        sys.exit(f"the two records were trained for {[r['steps'] for r in records]} steps, not both {args.steps}")
    from tunelab.compress.cost import machine

    m = machine()
    a, b = records
    lines = [
        "# LoRA on an int8 frozen base (QLoRA-style, CPU) vs the fp32 base: SmolLM2-135M (issue 16)",
        "",
        f"`examples/compress/smollm2-lora.yaml` (LoRA r=16, all linear layers, Alpaca, max_length 256, packed, batch 8), "
        f"{args.steps} steps each, same seed and data; each side in its own process. Machine: {m['cpu']} "
        f"({' '.join(m['flags'])}), 2 threads, torch {m['versions']['torch']}; fp32 training (train.precision auto picks fp32 here).",
        "",
        "| base | weights in memory MB | RSS at step 1 MB | peak RSS while training MB | peak RSS of the process MB | train s | dev loss (40 Alpaca dev examples) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, name in ((a, "fp32 (method.name=lora)"), (b, "int8 weight-only (method.name=qlora, method.base=int8)")):
        lines.append(
            f"| {name} | {r['weights_mb']} | {r['rss_at_first_step_mb']} | {r['peak_rss_training_mb']} | {r['peak_rss_process_mb']} | "
            f"{r['train_seconds']} | {r['dev_loss']:.4f} |"
        )
    lines += [
        "",
        f"Weights: {a['weights_mb'] / b['weights_mb']:.2f}x smaller; peak RSS while training {a['peak_rss_training_mb'] - b['peak_rss_training_mb']:+.0f} MB "
        f"(fp32 minus int8); dev loss difference (int8 - fp32) {b['dev_loss'] - a['dev_loss']:+.4f}; "
        f"training time ratio int8/fp32 {b['train_seconds'] / a['train_seconds']:.2f}x.",
        "The embeddings (and the tied LM head) stay fp32 in both: 28M of the 135M parameters.",
        "",
        "Commands (each side in its own locked command): `flock /tmp/tunelab-cpu.lock .venv/bin/python "
        f"bench/qlora_int8.py --steps {args.steps} --methods lora` and `... --methods qlora`",
    ]
    RESULT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
