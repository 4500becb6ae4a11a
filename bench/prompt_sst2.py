"""Prompt-based learning on real data with SmolLM2-135M (issue 13's acceptance numbers).

Parts (run in the order given by --parts; each writes its own results file under bench/results/<cpu kind>/):
  finetune  32 labelled SST-2 rows (16 per class, seeds 0-2): LoRA with a new classification head vs LoRA with
            the template + verbalizer as the head (task prompt_classification), same rows, steps, lr; dev accuracy
            on the first 500 dev rows; the untrained prompt (zero-shot) is recorded too.
  icl       `tunelab icl examples/prompting/sst2-icl.yaml`: k = 8 from the same 16-per-class pools, random /
            balanced / nearest, calibrated or not, 3 seeds.
  zeroshot  the same SST-2 prompt with no demonstrations (icl.shots=0), calibrated or not.
  agnews    `tunelab icl examples/prompting/agnews-zero-shot.yaml`: zero-shot with a 4-word verbalizer.
  prefix    prefix tuning of a minilm-l6 SST-2 classifier (tunelab's encoder route) vs its untrained head.
  nearest   the icl part's nearest-neighbour strategy alone (icl.selection=[nearest]), e.g. to finish it.
Afterwards prompt-compare-sst2.md puts every SST-2 number side by side (zero-shot, ICL per strategy and
calibration, head and prompt-based fine-tuning, all from the same 16-per-class draws).

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/prompt_sst2.py [--parts finetune,icl,prefix,agnews,zeroshot]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

from common import DATA, ROOT, header, load_average, machine, results_dir

THREADS = 2
RUNS = ROOT / "runs" / "bench-prompt"
FT_SETTINGS = [
    "model.name=smollm2-135m",
    "method=lora",
    "train.max_steps=32",
    "train.eval_every=32",
    "train.batch_size=8",
    "train.lr=1e-3",
    "model.max_length=128",
    f"train.threads={THREADS}",
    "data.text_column=sentence",
    f"data.dev={DATA / 'sst2' / 'dev.tsv'}",
    "data.max_dev_rows=500",
    "train.keep_checkpoints=none",
]
PROMPT = ["prompt.template=Review: {text}\nSentiment: {mask}", "prompt.verbalizer={0: [negative], 1: [positive]}"]


def few_shot_file(seed: int) -> Path:
    """16 rows per class of SST-2 train drawn with ``seed`` (the same draw `tunelab icl` makes with pool_per_class)."""
    from tunelab.prompting.demos import sample_per_class

    with open(DATA / "sst2" / "train.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    chosen = sample_per_class([r[1] for r in rows], 16, seed)
    out = RUNS / f"train-16x2-seed{seed}.tsv"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("sentence\tlabel\n" + "".join(f"{rows[i][0]}\t{rows[i][1]}\n" for i in chosen), encoding="utf-8")
    return out


def finetune_part(folder: Path, log) -> None:
    from tunelab import config
    from tunelab.recipes import finetune

    rows, seeds = {"head": [], "prompt": [], "prompt (untrained)": []}, [0, 1, 2]
    (RUNS / "finetune.json").parent.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        data = few_shot_file(seed)
        for kind, extra in (("head", ["task=classification"]), ("prompt", ["task=prompt_classification", *PROMPT])):
            out = RUNS / f"{kind}-seed{seed}"
            overrides = [*FT_SETTINGS, *extra, f"data.train={data}", f"train.seed={seed}", f"output_dir={out}"]
            start = time.time()
            final = finetune.run(config.load(None, overrides), quiet=True, log=log)
            rows[kind].append(final["dev"]["accuracy"])
            if "baseline" in final:  # the prompt task evaluates the untrained model first (zero-shot prompt)
                rows["prompt (untrained)"].append(final["baseline"]["accuracy"])
            log(f"{kind} seed {seed}: dev accuracy {final['dev']['accuracy']:.4f} ({time.time() - start:.0f} s)")
    lines = [
        "# Prompt-based vs head fine-tuning: SST-2, 32 labelled rows, SmolLM2-135M, LoRA",
        "",
        f"Settings: {' '.join(FT_SETTINGS)}; prompt: `{PROMPT[0]!r}`, `{PROMPT[1]}`. Dev: first 500 rows of SST-2 dev.",
        "",
        "| head | seeds | dev accuracy per seed | mean ± std |",
        "|---|---|---|---|",
    ]
    for kind, accs in rows.items():
        if accs:
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            per = ", ".join(f"{a:.4f}" for a in accs)
            lines.append(f"| {kind} | {len(accs)} | {per} | {statistics.fmean(accs):.4f} ± {std:.4f} |")
    (RUNS / "finetune.json").write_text(json.dumps(rows), encoding="utf-8")
    if rows["head"] and rows["prompt"]:
        gain = 100 * (statistics.fmean(rows["prompt"]) - statistics.fmean(rows["head"]))
        lines += ["", f"Prompt-based minus head fine-tuning: **{gain:+.1f} points** of dev accuracy (mean of seeds)."]
    (folder / "prompt-finetune-sst2.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def icl_part(folder: Path, example: str, name: str, log, more: tuple = ()) -> None:
    from tunelab import config
    from tunelab.recipes import icl

    overrides = [f"output_dir={RUNS / name}", f"train.threads={THREADS}", *more]
    cfg = config.load(ROOT / "examples" / "prompting" / example, overrides)
    start = time.time()
    summary = icl.run(cfg, log=log)
    text = icl.markdown(summary) + f"\nWall time: {time.time() - start:.0f} s with {THREADS} threads.\n"
    (folder / f"prompt-{name}.md").write_text(text, encoding="utf-8")


PREFIX_SETTINGS = [
    "model.name=minilm-l6",
    "method=prefix",
    f"data.train={DATA / 'sst2' / 'train.tsv'}",
    "data.max_train_rows=4000",
    f"data.dev={DATA / 'sst2' / 'dev.tsv'}",
    "data.max_dev_rows=500",
    "data.text_column=sentence",
    "model.max_length=64",
    "train.epochs=2",
    "train.batch_size=32",
    "train.lr=1e-2",
    f"train.threads={THREADS}",
    "train.keep_checkpoints=none",
]


def prefix_part(folder: Path, log) -> None:
    from tunelab import config
    from tunelab.recipes import compare, finetune

    cfg = config.load(None, [*PREFIX_SETTINGS, f"output_dir={RUNS / 'prefix-minilm'}"])
    (RUNS / "prefix-baseline").mkdir(parents=True, exist_ok=True)
    base, _ = compare.untrained_head(cfg, RUNS / "prefix-baseline", log)
    start = time.time()
    final = finetune.run(cfg, quiet=True, log=log)
    lines = [
        "# Prefix tuning on an encoder classifier: minilm-l6, SST-2 (first 4000 train rows, first 500 dev rows)",
        "",
        f"Settings: {' '.join(PREFIX_SETTINGS)}",
        "",
        "| model | trainable parameters | dev accuracy |",
        "|---|---|---|",
        f"| untrained head | 0 | {base['metric']:.4f} |",
        f"| prefix (20 tokens) + head | {final['trainable_parameters']:,} | {final['dev']['accuracy']:.4f} |",
        "",
        f"Training time: {time.time() - start:.0f} s with {THREADS} threads.",
    ]
    (folder / "prompt-prefix-sst2.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def compare_table(folder: Path) -> None:
    """Every SST-2 result measured so far (runs/bench-prompt/), one row per approach: mean ± std over seeds."""
    lines = [
        "# SST-2 with 32 labelled rows (16 per class, seeds 0-2): SmolLM2-135M, first 500 dev rows",
        "",
        "| approach | uses the 32 rows as | seeds | accuracy (mean ± std) |",
        "|---|---|---|---|",
    ]
    runs = (("zero-shot-sst2", "nothing (zero-shot)"), ("icl-sst2", "k = 8 demonstrations"))
    for name, use in (*runs, ("icl-nearest-sst2", "k = 8 demonstrations")):
        path = RUNS / name / "icl.json"
        if path.is_file():
            for r in json.loads(path.read_text())["results"]:
                label = f"{r['strategy']}{' + calibration' if r['calibrated'] else ''}"
                acc = f"{r['accuracy']:.4f} ± {r['accuracy_std']:.4f}"
                lines.append(f"| ICL {label} | {use} | {len(r['seeds'])} | {acc} |")
    path = RUNS / "finetune.json"
    if path.is_file():
        for kind, accs in json.loads(path.read_text()).items():
            if accs and kind != "prompt (untrained)":
                std = statistics.stdev(accs) if len(accs) > 1 else 0.0
                what = "LoRA + new head" if kind == "head" else "LoRA + template/verbalizer head"
                lines.append(
                    f"| fine-tuning: {what} | training set | {len(accs)} | {statistics.fmean(accs):.4f} ± {std:.4f} |"
                )
    (folder / "prompt-compare-sst2.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


PARTS = {
    "finetune": lambda folder, log: finetune_part(folder, log),
    "icl": lambda folder, log: icl_part(folder, "sst2-icl.yaml", "icl-sst2", log),
    "zeroshot": lambda folder, log: icl_part(folder, "sst2-icl.yaml", "zero-shot-sst2", log, ("icl.shots=0",)),
    "prefix": lambda folder, log: prefix_part(folder, log),
    "agnews": lambda folder, log: icl_part(folder, "agnews-zero-shot.yaml", "agnews-zero-shot", log),
    # nearest-neighbour selection on its own (the slowest strategy: a prompt per dev row), same pools and seeds
    "nearest": lambda folder, log: icl_part(
        folder, "sst2-icl.yaml", "icl-nearest-sst2", log, ("icl.selection=[nearest]",)
    ),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="finetune,icl,prefix,agnews,zeroshot")
    args = parser.parse_args()
    unknown = [p for p in args.parts.split(",") if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; parts: {', '.join(PARTS)}")
    folder, load_before = results_dir(), load_average()
    rep = machine(THREADS, seconds=0.5)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for part in args.parts.split(","):
        start = time.time()
        try:
            PARTS[part](folder, log)
        except Exception as exc:  # one failing part must not lose the others' numbers
            log(f"part {part} FAILED: {type(exc).__name__}: {exc}")
        log(f"part {part}: {time.time() - start:.0f} s")
        compare_table(folder)
    command = f".venv/bin/python bench/prompt_sst2.py --parts {args.parts}"
    (folder / "prompt-machine.md").write_text("\n".join(header(rep, load_before, load_average(), command)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
