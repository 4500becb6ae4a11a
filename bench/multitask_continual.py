"""Issue 12 acceptance runs (row counts are flags; the README and bench/results say what ran).

--part multitask: SST-2 + AG News on one shared minilm-l6 (a head each) vs each task's single-task run. Each task
trains on exactly the same batches in both settings: proportional mixing gives every member, in each epoch, the
batches its single-task run gets (training/mixing.py), interleaved. AG News has no dev file: the first
--agnews-rows rows are read and a stratified, seeded 10% is held out as its dev set (the same rows in every run).
--part continual: SST-2 -> AG News -> WikiANN with one shared minilm-l6 and a head per task, for each strategy
(--strategies): the accuracy matrix, average forgetting and backward transfer of each. --stages 2 stops after AG
News and --first-stage-from DIR starts from a finished run's first stage (stage 0 trains the same way for naive,
replay and ewc): a cheaper look at one setting (e.g. EWC's lambda) that the README reports as such.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/multitask_continual.py --part multitask
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/multitask_continual.py --part continual
Results: bench/results/multitask.{json,md} and bench/results/<--results>.{json,md} (one row per strategy; a later
invocation adds or replaces its strategies' rows and keeps the others, each with the command that made it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from common import DATA, RESULTS, load_average, machine

STAGE_NAMES = ("sst2", "agnews", "wikiann")


def command() -> str:
    return "flock /tmp/tunelab-cpu.lock .venv/bin/python bench/multitask_continual.py " + " ".join(sys.argv[1:])


def common(args, out: str) -> list[str]:
    return [
        f"model.name={args.model}",
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


def sst2(rows: int, dev_rows: int | None) -> dict:
    data = {"train": str(DATA / "sst2" / "train.tsv"), "dev": str(DATA / "sst2" / "dev.tsv")}
    data.update({"text_column": "sentence", "max_train_rows": rows})
    return {**data, "max_dev_rows": dev_rows} if dev_rows else data


def agnews(rows: int, dev_fraction: float) -> dict:
    """The first ``rows`` rows of AG News' only file, a stratified ``dev_fraction`` of them held out as dev."""
    data = {"train": str(DATA / "agnews" / "train.tsv"), "has_header": False, "text_column": 0, "label_column": 1}
    return {**data, "max_train_rows": rows, "dev_fraction": dev_fraction}


def run(overrides: list[str]) -> dict:
    from tunelab import config
    from tunelab.recipes import finetune

    cfg = config.load(None, overrides)
    shutil.rmtree(cfg.output_dir, ignore_errors=True)
    start = time.perf_counter()
    final = finetune.run(cfg, quiet=True, log=lambda m: print(m, file=sys.stderr))
    final["wall_seconds"] = round(time.perf_counter() - start, 1)
    return final


def multitask_part(args, rep, load_before) -> None:
    data = {"sst2": sst2(args.sst2_rows, args.dev_rows), "agnews": agnews(args.agnews_rows, 0.1)}
    results = {}
    for name, d in data.items():
        flat = [f"data.{k}={v}" for k, v in d.items()]
        results[name] = run(common(args, f"{args.out}/{name}") + flat)
    tasks = ", ".join("{name: %s, data: %s}" % (n, json.dumps(d)) for n, d in data.items())  # JSON is YAML
    results["multitask"] = run(
        common(args, f"{args.out}/multitask") + ["task=multitask", "task.mixing=proportional", f"task.tasks=[{tasks}]"]
    )
    rows = []
    for name in data:
        single, multi = results[name]["dev"], results["multitask"]["dev"]["tasks"][name]
        rows.append(
            {
                "task": name,
                "single": single["accuracy"],
                "multitask": multi["accuracy"],
                "diff_points": round(100 * (multi["accuracy"] - single["accuracy"]), 2),
            }
        )
    summary = {
        "command": command(),
        "args": vars(args),
        "cpu": rep["cpu"]["model"],
        "load_average": [load_before, load_average()],
        "rows": rows,
        "macro": results["multitask"]["dev"]["macro"],
        "train_seconds": {n: r["train_seconds"] for n, r in results.items()},
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
    lines += ["", f"Optimizer steps: {summary['steps']}; train seconds: {summary['train_seconds']}."]
    (RESULTS / "multitask.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def stages(args) -> list[dict]:
    wikiann = {
        "train": str(DATA / "wikiann-en" / "train"),
        "dev": str(DATA / "wikiann-en" / "dev"),
        "format": "conll",
        "max_train_rows": args.cl_wikiann_rows,
        "max_dev_rows": args.cl_dev_rows,
    }
    held = args.cl_dev_rows / (args.cl_agnews_rows + args.cl_dev_rows)  # AG News: cl_dev_rows held out of the rows read
    out = [
        {"name": "sst2", "data": sst2(args.cl_sst2_rows, args.cl_dev_rows)},
        {"name": "agnews", "data": agnews(args.cl_agnews_rows + args.cl_dev_rows, round(held, 4))},
        {"name": "wikiann", "task": {"name": "token_classification", "token_prefix": "en:"}, "data": wikiann},
    ]
    return out[: args.stages]


def continual_config(args, strategy: str, out: str) -> dict:
    method = "lora" if strategy == "adapters" else "full"
    return {
        "model": {"name": args.model, "max_length": args.max_length},
        "method": {"name": method, **({"r": 8} if method == "lora" else {})},
        "train": {
            "epochs": args.epochs,
            "batch_size": 32,
            "lr": args.cl_lr if method == "full" else args.adapter_lr,
            "threads": args.threads,
            "keep_checkpoints": "none",
        },
        "speed": {"cache": False},
        "output_dir": out,
        "continual": {
            "strategy": strategy,
            "stages": stages(args),
            "replay_k": args.replay_k,
            "ewc_lambda": args.ewc_lambda,
            "fisher_batches": args.fisher_batches,
        },
    }


def continual_part(args, rep, load_before) -> None:
    """SST-2 -> AG News -> WikiANN with one shared minilm-l6, a head per task, each strategy in turn."""
    import yaml

    from tunelab.recipes import continual

    path_json = RESULTS / f"{args.results}.json"
    saved = json.loads(path_json.read_text(encoding="utf-8")) if path_json.is_file() else {"results": {}}
    for strategy in args.strategies.split(","):
        key = strategy if strategy != "ewc" else f"ewc (lambda {args.ewc_lambda:g})"
        out = f"{args.out}/continual-{strategy}-{args.ewc_lambda:g}"
        shutil.rmtree(out, ignore_errors=True)
        path = Path(args.out) / f"continual-{strategy}-{args.ewc_lambda:g}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(continual_config(args, strategy, out)), encoding="utf-8")
        if args.first_stage_from:  # stage 0 as a finished run trained it (same config but the strategy)
            cfg, cc = continual.load(str(path), [])
            continual.check_saved(Path(out), cfg, cc)
            shutil.copytree(Path(args.first_stage_from) / "00-sst2", Path(out) / "00-sst2")
        start = time.perf_counter()
        result = continual.run(str(path), [], quiet=True, log=lambda m: print(m, file=sys.stderr))
        keep = ("matrix", "average_forgetting", "backward_transfer", "final_average")
        saved["results"][key] = {k: result[k] for k in keep}
        saved["results"][key].update(
            wall_seconds=round(time.perf_counter() - start, 1),
            command=command(),
            cpu=rep["cpu"]["model"],
            load_average=[load_before, load_average()],
            args=vars(args),
        )
        path_json.write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")  # each strategy as it finishes
        write_table(saved, RESULTS / f"{args.results}.md")


def write_table(saved: dict, path: Path) -> None:
    heads = [f"after stage {i + 1} ({', '.join(STAGE_NAMES[: i + 1])})" for i in range(3)]
    lines = [
        "Scores: accuracy (sst2, agnews), entity F1 (wikiann); each row's command below the table.",
        "",
        "| strategy | " + " | ".join(heads) + " | average forgetting | backward transfer | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in saved["results"].items():
        cells = [", ".join(f"{x:.4f}" for x in row if x is not None) for row in v["matrix"]]
        cells += [""] * (3 - len(cells))
        lines.append(
            f"| {k} | {' | '.join(cells)} | {v['average_forgetting']:.4f} | {v['backward_transfer']:+.4f} "
            f"| {v['wall_seconds']} |"
        )
    lines.append("")
    for k, v in saved["results"].items():
        lines.append(f"- {k}: `{v['command']}`; CPU {v['cpu']}; load {v['load_average'][0]} -> {v['load_average'][1]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=["multitask", "continual"], default="multitask")
    p.add_argument("--sst2-rows", type=int, default=4000)
    p.add_argument("--agnews-rows", type=int, default=10000, help="rows read; 10%% of them held out as dev")
    p.add_argument("--dev-rows", type=int, default=None, help="SST-2 dev rows (default: all of dev.tsv)")
    p.add_argument("--lr", type=float, default=5e-5, help="multitask part's learning rate")
    p.add_argument("--cl-sst2-rows", type=int, default=4000)
    p.add_argument("--cl-agnews-rows", type=int, default=4000, help="training rows (plus --cl-dev-rows held out)")
    p.add_argument("--cl-wikiann-rows", type=int, default=5000)
    p.add_argument("--cl-dev-rows", type=int, default=1000)
    p.add_argument("--cl-lr", type=float, default=1e-4)
    p.add_argument("--adapter-lr", type=float, default=1e-3)
    p.add_argument("--stages", type=int, default=3, choices=[2, 3])
    p.add_argument("--first-stage-from", default=None, help="a finished continual run folder whose 00-sst2 to reuse")
    p.add_argument("--strategies", default="naive,replay,ewc,adapters")
    p.add_argument("--replay-k", type=int, default=100)
    p.add_argument("--ewc-lambda", type=float, default=1e4)
    p.add_argument("--fisher-batches", type=int, default=8)
    p.add_argument("--results", default="continual", help="results file name under bench/results")
    p.add_argument("--model", default="minilm-l6", help="another model only for a quick check of the script")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="/tmp/tunelab-bench-multitask")
    args = p.parse_args()
    load_before, rep = load_average(), machine(args.threads)
    if args.part == "continual":
        continual_part(args, rep, load_before)
    else:
        multitask_part(args, rep, load_before)


if __name__ == "__main__":
    main()
