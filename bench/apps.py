"""Run an application recipe (examples/apps/NAME/run.sh) at full size and record its figures.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/apps.py fpb-monitor       # or customer-service, movielens
    .venv/bin/python bench/apps.py fpb-monitor --summarize-only --seconds 412    # record a run made by run.sh itself

Writes bench/results/<cpu-kind>/apps-NAME.md and .json: the machine, the command, the wall time, and the numbers the
recipe's own output files hold (nothing is typed in by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, header, load_average, machine, results_dir  # noqa: E402


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def fpb(out: Path) -> tuple[dict, list[str]]:
    table = _json(out / "compare" / "compare.json")
    rows = table["rows"] if isinstance(table, dict) and "rows" in table else table
    lines = ["| method | dev accuracy | dev macro-F1 | trainable params | train time (s) |", "|---|---|---|---|---|"]
    figures: dict = {"methods": {}}
    base = next((r for r in rows if r.get("status") == "baseline"), None)
    if base is not None:
        figures["untrained_head_accuracy"] = base["metric"]
        lines.append(f"| untrained head | {base['metric']:.4f} | - | 0 | - |")
    for method in sorted(p.name for p in (out / "compare").iterdir() if (p / "metrics.json").is_file()):
        dev = _json(out / "compare" / method / "metrics.json")["dev"]
        row = next((r for r in rows if r.get("method") == method), {})
        figures["methods"][method] = {"accuracy": dev["accuracy"], "macro_f1": dev["macro_f1"]}
        lines.append(
            f"| {method} | {dev['accuracy']:.4f} | {dev['macro_f1']:.4f} | {row.get('trainable', '?'):,} | "
            f"{row.get('train_seconds', '?')} |"
        )
    events = [json.loads(x) for x in (out / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    preds = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    figures["stream"] = {"predictions": len(preds), "alerts": sum(e["event"] == "alert" for e in events)}
    lines += [
        "",
        f"Monitor over {len(preds)} dev headlines (window 20, threshold 0.3 of `negative`): "
        f"{figures['stream']['alerts']} alert(s); first events:",
        "",
        "```",
        *[json.dumps({k: v for k, v in e.items() if k != "examples"}) for e in events[:4]],
        "```",
        "",
        "Serve's `/metrics` after two `/v1/predict` texts (predicted-label lines):",
        "",
        "```",
        *[x for x in (out / "serve-metrics.txt").read_text().splitlines() if x.startswith("tunelab_predictions_total")],
        "```",
    ]
    return figures, lines


def customer_service(out: Path) -> tuple[dict, list[str]]:
    intent = _json(out / "intent" / "metrics.json")["dev"]
    assistant = _json(out / "assistant" / "metrics.json")
    dev, before = assistant["dev"], assistant.get("baseline", {})
    figures = {
        "intent_accuracy": intent["accuracy"],
        "intent_macro_f1": intent["macro_f1"],
        "assistant_dev": {k: dev[k] for k in ("loss", "perplexity", "rougeL", "bleu", "eos_rate") if k in dev},
        "assistant_untuned": {k: before[k] for k in ("loss", "rougeL") if k in before},
    }
    lines = [
        "| model | dev figures |",
        "|---|---|",
        f"| intent classifier (MiniLM, full) | accuracy {intent['accuracy']:.4f}, macro-F1 {intent['macro_f1']:.4f} |",
        "| assistant (SmolLM2-135M, LoRA) | "
        + ", ".join(f"{k} {v:.4f}" for k, v in figures["assistant_dev"].items())
        + " |",
    ]
    if figures["assistant_untuned"]:
        lines.append(
            "| untuned SmolLM2-135M-Instruct | "
            + ", ".join(f"{k} {v:.4f}" for k, v in figures["assistant_untuned"].items())
            + " |"
        )
    lines += ["", "Transcript (`OUT/transcript.md`):", "", *(out / "transcript.md").read_text().splitlines()[4:]]
    return figures, lines


def movielens(out: Path) -> tuple[dict, list[str]]:
    summary = _json(out / "data" / "summary.json")
    figures = {"data": summary}
    lines = ["| ranker | HR@10 | NDCG@10 |", "|---|---|---|"]
    for name, label in [
        ("popularity", "popularity (training interactions)"),
        ("untuned", "untuned MiniLM embeddings (cosine)"),
        ("pairs", "(a) text-pair classifier, P(relevant)"),
        ("biencoder", "(b) contrastive bi-encoder (cosine)"),
    ]:
        r = _json(out / f"hr-{name}.json")
        figures[name] = {"hr@10": r["hr@10"], "ndcg@10": r["ndcg@10"]}
        lines.append(f"| {label} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} |")
    pairs = _json(out / "pairs" / "metrics.json")
    figures["pairs_dev"] = {k: pairs["dev"][k] for k in ("accuracy", "macro_f1", "loss")}
    figures["pairs_steps"] = pairs["steps"]
    lines += [
        "",
        f"{summary['test_rows']} test users, {summary['candidates_per_user']} candidates each; training rows: "
        f"{summary['pairs-train_rows']} pairs, {summary['retrieval-train_rows']} retrieval pairs.",
        "",
        f"(a) on its dev pairs (balanced, sampled negatives) after {pairs['steps']} steps: accuracy "
        f"{pairs['dev']['accuracy']:.4f}, macro-F1 {pairs['dev']['macro_f1']:.4f}, loss {pairs['dev']['loss']:.4f} "
        "(ln 2 = 0.6931).",
    ]
    return figures, lines


RECIPES = {"fpb-monitor": fpb, "customer-service": customer_service, "movielens": movielens}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", choices=list(RECIPES))
    p.add_argument("out", nargs="?", help="the recipe's output folder (default runs/apps/<short name>)")
    p.add_argument("--summarize-only", action="store_true", help="record an existing run (give --seconds)")
    p.add_argument("--seconds", type=float, default=None, help="wall time of that run")
    args = p.parse_args()
    out = Path(args.out or f"runs/apps/{ {'fpb-monitor': 'fpb'}.get(args.recipe, args.recipe) }")
    command = f"examples/apps/{args.recipe}/run.sh {out}"
    load_before = load_average()
    seconds = args.seconds
    if not args.summarize_only:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        start = time.monotonic()
        subprocess.run(
            ["bash", str(ROOT / "examples" / "apps" / args.recipe / "run.sh"), str(out)], check=True, env=env
        )
        seconds = time.monotonic() - start
    figures, lines = RECIPES[args.recipe](out)
    rep = machine(threads=2)
    folder = results_dir()
    md = [
        f"# Recipe {args.recipe}",
        "",
        *header(rep, load_before, load_average(), command),
        f"Wall time of the whole recipe: {seconds:.0f} s" if seconds else "Wall time: not recorded",
        "",
        *lines,
        "",
    ]
    (folder / f"apps-{args.recipe}.md").write_text("\n".join(md), encoding="utf-8")
    (folder / f"apps-{args.recipe}.json").write_text(
        json.dumps({"command": command, "seconds": seconds, **figures}, indent=2), encoding="utf-8"
    )
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
