"""Issue 12 acceptance runs, sized to the session's CPU budget (row counts are flags; the README says what ran).

--part multitask: SST-2 + AG News on one shared minilm-l6 vs each task's single-task run. Each task sees the same
training rows in both settings (one epoch over its rows; the multitask run mixes the two members' batches
proportionally, so each member is seen about once).
--part continual: SST-2 -> AG News -> WikiANN with one shared minilm-l6 and a head per task, for each strategy
(--strategies): the accuracy matrix, average forgetting and backward transfer of each.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/multitask_continual.py [--part continual]
Results: bench/results/multitask.{json,md} and bench/results/continual.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from common import DATA, RESULTS, load_average, machine


def common(args, out: str) -> list[str]:
    return [
        "model.name=minilm-l6",
        f"model.max_length={args.max_length}",
        "method=full",
        f"train.epochs={args.epochs}",
        "train.batch_size=32",
        f"train.lr={args.lr}",
        f"train.threads={args.threads}",
        "train.keep_checkpoints=none",
        "speed.cache=false",
        f"output_dir={out}",
    ]


def members(args) -> dict[str, dict]:
    sst2 = {
        "train": str(DATA / "sst2" / "train.tsv"),
        "dev": str(DATA / "sst2" / "dev.tsv"),
        "text_column": "sentence",
        "max_train_rows": args.sst2_rows,
        "max_dev_rows": args.dev_rows,
    }
    agnews = {
        "train": str(DATA / "agnews" / "train.tsv"),
        "has_header": False,
        "text_column": 0,
        "label_column": 1,
        "max_train_rows": args.agnews_rows,
        "dev_fraction": 0.2,
    }
    return {"sst2": sst2, "agnews": agnews}


def run(overrides: list[str]) -> dict:
    from tunelab import config
    from tunelab.recipes import finetune

    cfg = config.load(None, overrides)
    shutil.rmtree(cfg.output_dir, ignore_errors=True)
    start = time.perf_counter()
    final = finetune.run(cfg, quiet=True, log=lambda m: print(m, file=sys.stderr))
    final["wall_seconds"] = round(time.perf_counter() - start, 1)
    return final


def continual_part(args, rep, load_before) -> None:
    """SST-2 -> AG News -> WikiANN with one shared minilm-l6, a head per task, each strategy in turn."""
    import yaml

    from tunelab.recipes import continual

    data = members(args)
    data["sst2"]["max_dev_rows"] = args.cl_dev_rows
    wikiann = {
        "train": str(DATA / "wikiann-en" / "train"),
        "dev": str(DATA / "wikiann-en" / "dev"),
        "format": "conll",
        "max_train_rows": args.cl_rows,
        "max_dev_rows": args.cl_dev_rows,
    }
    stages = [
        {"name": "sst2", "data": {**data["sst2"], "max_train_rows": args.cl_rows}},
        {"name": "agnews", "data": {**data["agnews"], "max_train_rows": int(args.cl_rows * 1.25)}},
        {"name": "wikiann", "task": {"name": "token_classification", "token_prefix": "en:"}, "data": wikiann},
    ]
    results = {}
    for strategy in args.strategies.split(","):
        method = "lora" if strategy == "adapters" else "full"
        out = f"{args.out}/continual-{strategy}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = {
            "model": {"name": "minilm-l6", "max_length": args.max_length},
            "method": {"name": method, **({"r": 8} if method == "lora" else {})},
            "train": {
                "epochs": args.epochs,
                "batch_size": 32,
                "lr": args.lr if method == "full" else 1e-3,
                "threads": args.threads,
                "keep_checkpoints": "none",
            },
            "speed": {"cache": False},
            "output_dir": out,
            "continual": {
                "strategy": strategy,
                "stages": stages,
                "replay_k": args.replay_k,
                "ewc_lambda": args.ewc_lambda,
            },
        }
        path = Path(args.out) / f"continual-{strategy}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
        start = time.perf_counter()
        results[strategy] = continual.run(str(path), [], quiet=True, log=lambda m: print(m, file=sys.stderr))
        results[strategy]["wall_seconds"] = round(time.perf_counter() - start, 1)
        summary = {
            "command": "flock /tmp/tunelab-cpu.lock .venv/bin/python bench/multitask_continual.py "
            + " ".join(sys.argv[1:]),
            "args": vars(args),
            "cpu": rep["cpu"]["model"],
            "load_average": [load_before, load_average()],
            "results": {
                k: {
                    n: v[n]
                    for n in ("matrix", "average_forgetting", "backward_transfer", "final_average", "wall_seconds")
                }
                for k, v in results.items()
            },
        }
        (RESULTS / "continual.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        lines = [
            f"Command: `{summary['command']}`; CPU: {summary['cpu']}; load {load_before} -> {load_average()}.",
            "",
            "| strategy | after stage 1 (sst2) | after stage 2 (sst2, agnews) | after stage 3 (sst2, agnews, wikiann F1) "
            "| average forgetting | backward transfer | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, v in summary["results"].items():
            cells = [", ".join(f"{x:.4f}" for x in row if x is not None) for row in v["matrix"]]
            lines.append(
                f"| {k} | {' | '.join(cells)} | {v['average_forgetting']:.4f} | {v['backward_transfer']:+.4f} | {v['wall_seconds']} |"
            )
        (RESULTS / "continual.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=["multitask", "continual"], default="multitask")
    p.add_argument(
        "--cl-rows", type=int, default=1000, help="continual: training rows of SST-2 and WikiANN (AG News 1.25x)"
    )
    p.add_argument("--cl-dev-rows", type=int, default=1000)
    p.add_argument("--strategies", default="naive,replay,ewc,adapters")
    p.add_argument("--replay-k", type=int, default=100)
    p.add_argument("--ewc-lambda", type=float, default=1000.0)
    p.add_argument("--sst2-rows", type=int, default=4000)
    p.add_argument("--agnews-rows", type=int, default=10000)
    p.add_argument("--dev-rows", type=int, default=2000)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="/tmp/tunelab-bench-multitask")
    args = p.parse_args()
    load_before, rep = load_average(), machine(args.threads)
    if args.part == "continual":
        continual_part(args, rep, load_before)
        return
    data = members(args)
    results = {}
    for name, d in data.items():
        flat = [f"data.{k}={v}" for k, v in d.items()]
        results[name] = run(common(args, f"{args.out}/{name}") + flat)
    tasks = ", ".join(
        "{name: %s, data: %s}" % (n, json.dumps(d)) for n, d in data.items()
    )  # JSON is YAML: the override value
    results["multitask"] = run(common(args, f"{args.out}/multitask") + ["task=multitask", f"task.tasks=[{tasks}]"])
    rows = []
    for name in data:
        single = results[name]["dev"]["accuracy"]
        multi = results["multitask"]["dev"]["tasks"][name]["accuracy"]
        rows.append(
            {"task": name, "single": single, "multitask": multi, "diff_points": round(100 * (multi - single), 2)}
        )
    summary = {
        "command": "flock /tmp/tunelab-cpu.lock .venv/bin/python bench/multitask_continual.py "
        + " ".join(sys.argv[1:]),
        "args": vars(args),
        "cpu": rep["cpu"]["model"],
        "load_average": [load_before, load_average()],
        "rows": rows,
        "macro": results["multitask"]["dev"]["macro"],
        "seconds": {n: r["train_seconds"] for n, r in results.items()},
        "steps": {n: r["steps"] for n, r in results.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "multitask.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"Command: `{summary['command']}`; CPU: {summary['cpu']}; load {load_before} -> {load_average()}.",
        "",
        "| task | single-task dev accuracy | multitask dev accuracy | difference (points) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['task']} | {r['single']:.4f} | {r['multitask']:.4f} | {r['diff_points']:+.2f} |" for r in rows]
    lines += ["", f"Steps: {summary['steps']}; train seconds: {summary['seconds']}."]
    (RESULTS / "multitask.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
