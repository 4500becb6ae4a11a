"""Side-by-side training speed: tunelab vs HF Trainer + PEFT (careful and default) vs the seeds' naive loop.

    .venv/bin/python bench/speed.py [--scenario instruct-lora|sst2-full|sst2-lora|all] [--threads 2]
    .venv/bin/python bench/speed.py --levers          # each speed lever on/off -> bench/results/levers.md
    .venv/bin/python bench/speed.py --smoke --model-lm DIR --model-cls DIR --out DIR   # a few steps, tiny models (the test)

Every side runs in its own process (bench/speed_sides.py) on the same rows, token ids, hyperparameters and
number of examples; the bf16 matmul peak is measured in the same invocation. Writes bench/results/<scenario>.md
with useful (non-pad) tokens/s, train and wall time, peak RSS, final train/dev loss or accuracy, achieved
GFLOP/s as a fraction of the peak, the ratios, and the correctness guard (tunelab's dev metric vs the reference's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"

SCENARIOS = {
    "instruct-lora": {
        "task": "causal_lm",
        "model": "smollm2-135m",
        "data": "alpaca",
        "rows": 192,
        "dev_rows": 48,
        "max_length": 512,
        "method": "lora",
        "lr": 2e-4,
        "batch_size": 8,
        "naive_steps": 4,
        "sides": ["tunelab", "reference", "hf-default", "naive"],
        "metric": "dev loss",
        "tolerance": 0.05,
    },
    "sst2-full": {
        "task": "classification",
        "model": "minilm-l6",
        "data": "sst2",
        "rows": 2000,
        "dev_rows": None,
        "max_length": 256,
        "method": "full",
        "lr": 5e-5,
        "batch_size": 32,
        "naive_steps": 12,
        "sides": ["tunelab", "reference", "naive"],
        "metric": "dev accuracy",
        "tolerance": 0.015,
    },
    "sst2-lora": {
        "task": "classification",
        "model": "minilm-l6",
        "data": "sst2",
        "rows": 2000,
        "dev_rows": None,
        "max_length": 256,
        "method": "lora",
        "lr": 1e-3,
        "batch_size": 32,
        "naive_steps": 12,
        "method_options": {"target_modules": ["query", "key", "value", "dense"]},
        "sides": ["tunelab", "reference", "naive"],
        "metric": "dev accuracy",
        "tolerance": 0.015,
    },
}
SIDE_NAMES = {
    "tunelab": "tunelab (defaults)",
    "reference": "HF Trainer+PEFT, careful (bf16, dynamic padding, length-grouped, fused AdamW, tcmalloc)",
    "hf-default": "HF Trainer+PEFT, default TrainingArguments (fp32)",
    "naive": "seeds' naive loop (pad to max_length, fp32, dropout on)",
}
PRELOADED = {
    "tunelab",
    "reference",
}  # the same allocator on both sides of the main comparison; baselines run as shipped


def write_subsets(spec: dict, work: Path) -> dict:
    """Copy the first rows of the scenario's data into work/ (train and dev files every side reads)."""
    spec = dict(spec)
    if spec["data"] == "alpaca":
        for split, n in (("train", spec["rows"]), ("dev", spec["dev_rows"])):
            rows = json.loads((DATA / "alpaca" / f"{split}.json").read_text(encoding="utf-8"))[:n]
            (work / f"{split}.json").write_text(json.dumps(rows), encoding="utf-8")
            spec[split] = str(work / f"{split}.json")
    else:
        for split, n in (("train", spec["rows"]), ("dev", spec["dev_rows"])):
            lines = (DATA / "sst2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
            (work / f"{split}.tsv").write_text("\n".join(lines[: (n + 1) if n else None]) + "\n", encoding="utf-8")
            spec[split] = str(work / f"{split}.tsv")
    return spec


def run_side(side: str, spec: dict, work: Path, tcmalloc: str | None, extra_env: dict | None = None) -> dict:
    spec_path, out_path = work / f"{side}.spec.json", work / f"{side}.out.json"
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **(extra_env or {}))
    if tcmalloc and side in PRELOADED and env.get("TUNELAB_TCMALLOC") != "0":
        env["LD_PRELOAD"] = tcmalloc
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "speed_sides.py"), side, str(spec_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"side {side} failed:\n{proc.stderr[-12000:]}")
    return json.loads(out_path.read_text())


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def measure(name: str, spec: dict, threads: int, smoke: bool, models: dict, log) -> tuple[dict, dict, dict]:
    """Run every side of a scenario; returns (spec, results per side, environment facts)."""
    from tunelab import launch

    spec = {**spec, "threads": threads}
    if smoke:
        spec.update(
            rows=16,
            dev_rows=8 if spec["dev_rows"] else 16,
            naive_steps=1,
            batch_size=4,
            peak_seconds=0.2,
            max_length=64,
        )
        spec["model"] = models["lm" if spec["task"] == "causal_lm" else "cls"]
    work = Path(tempfile.mkdtemp(prefix=f"speed-{name}-"))
    spec = write_subsets(spec, work)
    tcmalloc = launch.find_tcmalloc()
    env = {
        "load_before": load_average(),
        "tcmalloc": tcmalloc or "not installed",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    import torch

    from bench.speed_sides import peak_gflops

    torch.set_num_threads(threads)
    results = {"peak": {"peak_gflops": peak_gflops(spec.get("peak_seconds", 3.0))}}
    for side in spec["sides"]:
        log(f"{name}: {side} ...")
        results[side] = run_side(side, spec, work, tcmalloc)
        r = results[side]
        log(
            f"{name}: {side}: {r['tokens'] / r['train_seconds']:.0f} useful tok/s, {r['train_seconds']:.1f}s, dev {r['dev_metric']:.4f}"
        )
    env["load_after"] = load_average()
    return spec, results, env


def report(name: str, spec: dict, results: dict, env: dict) -> tuple[str, bool]:
    """The results markdown and whether the correctness guard passed."""
    import torch

    peak = results["peak"]["peak_gflops"]
    rate = {s: results[s]["tokens"] / results[s]["train_seconds"] for s in spec["sides"]}
    dev = f", {spec['dev_rows']} dev examples" if spec.get("dev_rows") else ", the full dev file"
    lines = [
        f"# Speed: {name}",
        "",
        f"{spec['model']}, {spec['task']}, method {spec['method']}, {spec['rows']} training examples{dev}"
        f", max_length {spec['max_length']}, batch {spec['batch_size']}, lr {spec['lr']}, 1 epoch; the naive loop runs {spec['naive_steps']} steps.",
        f"Machine: {platform.processor() or platform.machine()}, {spec['threads']} torch threads, torch {torch.__version__}; "
        f"bf16 matmul peak measured now: {peak:.0f} GFLOP/s. Load average before/after: {env['load_before']} / {env['load_after']}. "
        f"{env['date']}. tcmalloc: {env['tcmalloc']}.",
        "",
        "| side | useful tok/s | train s | wall s | peak RSS MB | train loss | "
        + spec["metric"]
        + " | GFLOP/s | % of bf16 peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in spec["sides"]:
        r = results[s]
        gf = r["flops"] / r["train_seconds"] / 1e9
        lines.append(
            f"| {SIDE_NAMES[s]} | {rate[s]:.0f} | {r['train_seconds']:.1f} | {r['wall_seconds']:.1f} | {r['rss_mb']:.0f} | "
            f"{r['train_loss']:.4f} | {r['dev_metric']:.4f} | {gf:.0f} | {100 * gf / peak:.1f}% |"
        )
    tl, ref = results["tunelab"], results["reference"]
    lines += ["", "| ratio (tunelab / other) | useful tokens/s | peak RSS |", "|---|---|---|"]
    for s in spec["sides"][1:]:
        lines.append(f"| vs {s} | {rate['tunelab'] / rate[s]:.2f}x | {tl['rss_mb'] / results[s]['rss_mb']:.2f} |")
    diff = tl["dev_metric"] - ref["dev_metric"]
    ok = abs(diff) <= spec["tolerance"] if spec["metric"] == "dev loss" else diff >= -spec["tolerance"]
    rule = (
        f"|difference| <= {spec['tolerance']}"
        if spec["metric"] == "dev loss"
        else f"tunelab >= reference - {spec['tolerance']}"
    )
    lines += [
        "",
        f"Correctness guard ({spec['metric']}, {rule}): tunelab {tl['dev_metric']:.4f} vs reference {ref['dev_metric']:.4f} "
        f"(difference {diff:+.4f}): **{'PASS' if ok else 'FAIL'}**",
        "",
        "Useful tokens = non-pad tokens of the training examples; time = first step start to last step end (model load, tokenising, "
        "evaluation excluded; wall s includes them). GFLOP/s counts the work the step needs (LM head at target positions only), "
        "not work spent on padding. Train loss = the last logged window; the sides draw batches in different orders, so it "
        "compares loosely; the dev metric is the like-for-like check.",
    ]
    return "\n".join(lines) + "\n", ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="all", help="instruct-lora, sst2-full, sst2-lora or all")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--smoke", action="store_true", help="a few steps on the given tiny models; correctness only, no timing claims"
    )
    p.add_argument("--levers", action="store_true", help="measure each speed lever on/off (bench/results/levers.md)")
    p.add_argument("--model-lm", help="--smoke: causal LM model directory")
    p.add_argument("--model-cls", help="--smoke: encoder model directory")
    p.add_argument("--out", default=str(RESULTS), help="results folder")
    p.add_argument(
        "--rows",
        type=int,
        help="override the number of training examples (quick looks; the committed results use the defaults)",
    )
    p.add_argument("--sides", help="comma-separated subset of sides (must include tunelab and reference)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.levers:
        from bench import speed_levers

        (out / "levers.md").write_text(speed_levers.run(args.threads, log))
        return 0
    names = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    all_ok = True
    for name in names:
        scenario = {
            **SCENARIOS[name],
            **({"rows": args.rows} if args.rows else {}),
            **({"sides": args.sides.split(",")} if args.sides else {}),
        }
        spec, results, env = measure(
            name, scenario, args.threads, args.smoke, {"lm": args.model_lm, "cls": args.model_cls}, log
        )
        text, ok = report(name, spec, results, env)
        (out / f"{name}.md").write_text(text)
        print(text)
        all_ok &= ok
    return 0 if all_ok or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())
