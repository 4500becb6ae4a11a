"""Federated LoRA on SST-2 (issue 20's acceptance): 4 simulated clients vs centralised LoRA, same examples seen.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/federated_sst2.py [--only central,iid_fedavg,...]

Data: the first 4,000 rows of SST-2 train.tsv (each client holds 1,000, of which 10% are held out for its local
metrics), the server's dev set = the first 1,000 rows of dev.tsv. Model minilm-l6 (max_length 64), LoRA r 8 on
query/key/value/dense, batch 32, lr 1e-3 constant, 2 threads, seed 42 (examples/federated/sst2-lora.yaml).
Runs (same total examples seen: rounds x clients x local_steps x batch = 4 x 4 x 15 x 32 = 7,680):
  central       `tunelab train`, 240 steps on all 4,000 rows, evaluated once at the end
  iid_fedavg    `tunelab federated`, IID partition, FedAvg
  noniid_fedavg Dirichlet alpha 0.3 partition (by label), FedAvg
  noniid_fedprox same partition, FedProx mu 0.01
Results: bench/results/federated-sst2.md and .json; runs in runs/bench-federated-sst2/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.common import header, load_average, machine  # noqa: E402

WORK = REPO / "runs" / "bench-federated-sst2"
OUT = REPO / "bench" / "results" / "federated-sst2.json"
CONFIG = "examples/federated/sst2-lora.yaml"
ROUNDS, CLIENTS, LOCAL = 4, 4, 15
RUNS = {
    "central": [
        "train",
        CONFIG,
        f"train.max_steps={ROUNDS * CLIENTS * LOCAL}",
        f"train.eval_every={ROUNDS * CLIENTS * LOCAL}",
    ],
    "iid_fedavg": ["federated", CONFIG],
    "noniid_fedavg": ["federated", CONFIG, "federated.partition=dirichlet", "federated.alpha=0.3"],
    "noniid_fedprox": [
        "federated",
        CONFIG,
        "federated.partition=dirichlet",
        "federated.alpha=0.3",
        "federated.strategy=fedprox",
        "federated.mu=0.01",
    ],
}


def run(name: str) -> dict:
    out = WORK / name
    shutil.rmtree(out, ignore_errors=True)  # the bench's own folder: a rerun starts the run afresh
    args = [*RUNS[name], f"output_dir={out.relative_to(REPO)}"]
    if args[0] == "train":  # a plain run: drop the federated section through a config without it
        args[1] = str(central_config().relative_to(REPO))
    cmd = [str(REPO / ".venv" / "bin" / "tunelab"), *args[:1], "--quiet", *args[1:]]
    print("$ tunelab " + " ".join(args), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = round(time.perf_counter() - start, 1)
    metrics = json.loads((out / "metrics.json").read_text())
    row = {"command": "tunelab " + " ".join(args), "seconds": seconds, "dev": metrics["dev"]}
    if "federated" in metrics:
        fed = metrics["federated"]
        rounds = json.loads((out / "federated.json").read_text())["rounds"]
        row["federated"] = {
            k: fed[k]
            for k in (
                "client_rows",
                "client_labels",
                "adapter_bytes",
                "adapter_payload_bytes",
                "bytes_per_round",
                "examples_seen",
            )
        }
        row["rounds"] = [
            {
                "round": r["round"],
                "accuracy": r["dev/accuracy"],
                "bytes_up": r["bytes_up"],
                "clients": [(c["client"], round(c["local_dev_accuracy"], 4)) for c in r["clients"]],
            }
            for r in rounds
        ]
    row["trainable_parameters"] = metrics["trainable_parameters"]
    row["total_parameters"] = metrics["total_parameters"]
    return row


def central_config() -> Path:
    """The example config without its federated: section (for `tunelab train`)."""
    import yaml

    raw = yaml.safe_load((REPO / CONFIG).read_text())
    raw.pop("federated")
    path = WORK / "central.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_md(results: dict, rep: dict, before: str, after: str, command: str) -> None:
    lines = ["# Federated LoRA on SST-2 (issue 20)", "", *header(rep, before, after, command), ""]
    lines += [
        "First 4,000 SST-2 training rows, 4 clients (1,000 rows each, 10% of them held out for local metrics), server dev "
        "= first 1,000 rows of dev.tsv; minilm-l6 + LoRA r 8 (query/key/value/dense), batch 32, lr 1e-3 constant, "
        f"{ROUNDS} rounds x {LOCAL} local steps per client = {ROUNDS * CLIENTS * LOCAL} steps of 32 in all "
        "(7,680 examples), the same as the centralised run.",
        "",
        "| run | dev accuracy | dev macro-F1 | wall s | bytes up per round | client label counts |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        fed = r.get("federated")
        up = f"{fed['bytes_per_round']['up']:,}" if fed else "-"
        labels = "; ".join(", ".join(f"{k}: {v}" for k, v in c.items()) for c in fed["client_labels"]) if fed else "-"
        lines.append(
            f"| {name} | {r['dev']['accuracy']:.4f} | {r['dev']['macro_f1']:.4f} | {r['seconds']} | {up} | {labels} |"
        )
    lines += [
        "",
        "Per round (server dev accuracy of the global adapter; each client's accuracy on its own held-out rows):",
        "",
    ]
    for name, r in results.items():
        for rd in r.get("rounds", []):
            clients = ", ".join(f"{k}: {a:.3f}" for k, a in rd["clients"])
            lines.append(
                f"- {name} round {rd['round']}: {rd['accuracy']:.4f}" + (f" (clients {clients})" if clients else "")
            )
    lines += ["", "Commands:", ""] + [f"    {r['command']}" for r in results.values()]
    (OUT.with_suffix(".md")).write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", help="comma-separated run names (default: all)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(RUNS)
    WORK.mkdir(parents=True, exist_ok=True)
    before = load_average()
    rep = machine(2)
    results = json.loads(OUT.read_text())["runs"] if OUT.is_file() else {}
    for name in names:
        results[name] = run(name)
        OUT.write_text(json.dumps({"machine": rep, "runs": results}, indent=1))
    write_md(
        results,
        rep,
        before,
        load_average(),
        "flock /tmp/tunelab-cpu.lock .venv/bin/python bench/federated_sst2.py " + " ".join(sys.argv[1:]),
    )
    print(json.dumps({k: v["dev"]["accuracy"] for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
