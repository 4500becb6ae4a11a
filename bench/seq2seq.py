"""Issue 19's acceptance runs at a CPU-sized scale (each part is one locked job of well under 15 minutes):

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py translation   # Multi30k en->de, smollm2 LoRA
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py scitldr       # SciTLDR-A, smollm2 LoRA vs untuned
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py dapt-mlm      # step 1: MiniLM MLM on AG News text
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py dapt-cls      # step 2: 1k-row classifiers, 3 seeds
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py bert2bert     # Multi30k en->de, MiniLM BERT2BERT
    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py rescore [RUN]  # a translation run on all 1,014 val

Each part runs `tunelab train` (the commands are printed and recorded) and writes
bench/results/<cpu kind>/seq2seq-<part>.json and .md with the machine, the commands, the sizes and the numbers.
Sizes are subsets chosen to fit the session's CPU budget (2 shared cores); they are stated in each results file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, header, load_average, machine, results_dir  # noqa: E402

WORK = ROOT / "runs" / "bench-seq2seq"
M30K, TLDR, AG = DATA / "multi30k", DATA / "scitldr", DATA / "agnews"
BASE = ["train.threads=2", "train.keep_checkpoints=none", "speed.cache=false", "train.seed=42"]

PARTS = {
    "translation": [
        {
            "name": "smollm2-135m LoRA, Multi30k en->de",
            "args": [
                "task=seq2seq",
                "model.name=smollm2-135m",
                "task.languages=[en,de]",
                "task.prompt=Translate English to German: {source}",
                f"data.train={M30K / 'train.en.gz'}",
                f"data.dev={M30K / 'val.en.gz'}",
                "data.max_train_rows=3200",
                "data.max_dev_rows=200",
                "task.eval_generations=200",
                "task.eval_max_new_tokens=48",
                "task.baseline=false",
                "model.max_length=128",
                "method=lora",
                "method.r=16",
                "train.lr=2e-3",
                "train.batch_size=16",
                "train.max_steps=170",
                "train.eval_every=170",
                "train.warmup_fraction=0.05",
                "generation.batch_size=25",
            ],
        }
    ],
    "bert2bert": [
        {
            "name": "minilm-l6 BERT2BERT (full), Multi30k en->de",
            "args": [
                "task=seq2seq",
                "model.name=minilm-l6",
                "task.languages=[en,de]",
                f"data.train={M30K / 'train.en.gz'}",
                f"data.dev={M30K / 'val.en.gz'}",
                "data.max_dev_rows=200",
                "task.eval_generations=200",
                "task.eval_max_new_tokens=48",
                "task.baseline=false",
                "model.max_length=64",
                "task.max_target_length=64",
                "method=full",
                "train.lr=2e-4",
                "train.batch_size=32",
                "train.warmup_fraction=0.05",
                "generation.batch_size=50",
            ],
            "minutes": 10.0,  # train.max_steps is sized to this from a 15-step probe run (the session's CPU budget)
        }
    ],
    "scitldr": [
        {
            "name": "smollm2-135m LoRA, SciTLDR-A (baseline = the untuned model, zero-shot)",
            "args": [
                "task=seq2seq",
                "model.name=smollm2-135m",
                "task.prompt=Summarize this paper abstract in one sentence.\n\n{source}",
                "task.targets=each",
                f"data.train={TLDR / 'train.jsonl'}",
                f"data.dev={TLDR / 'dev.jsonl'}",
                "data.max_train_rows=100",
                "data.max_dev_rows=40",
                "task.eval_generations=40",
                "task.eval_max_new_tokens=40",
                "task.baseline=true",
                "model.max_length=320",
                "method=lora",
                "method.r=16",
                "train.lr=1e-3",
                "train.batch_size=8",
                "train.max_steps=30",
                "train.eval_every=30",
                "train.warmup_fraction=0.05",
                "generation.batch_size=20",
            ],
        }
    ],
}
DAPT_MLM = [
    "task=masked_lm",
    "model.name=minilm-l6",
    "data.text_column=0",
    "data.has_header=false",
    "data.max_dev_rows=300",
    "model.max_length=64",
    "method=full",
    "train.lr=1e-4",
    "train.batch_size=32",
    "train.max_steps=360",  # ~10 minutes on 2 cores (the issue allows 20; the session's CPU budget is 30 in all)
    "train.eval_every=360",
    "train.warmup_fraction=0.06",
]
CLS_ROWS, EVAL_ROWS, SEEDS = 1000, 2000, (1, 2, 3)
DAPT_DATA = Path("/tmp/tunelab-bench-seq2seq/dapt-data")  # slices of the shared data, never in the repo


def shown_command(cmd: list[str]) -> str:
    return " ".join(a if " " not in a and "\n" not in a else json.dumps(a) for a in cmd)


def finished_run(prefix: str, args: list[str], log: list) -> dict | None:
    """The metrics of a finished earlier run WORK/<prefix>-<stamp> trained with exactly ``args`` (a locked job cut
    by its time limit leaves finished runs behind; the next job reuses them instead of training them again)."""
    for folder in sorted(WORK.glob(f"{prefix}-*"), reverse=True):
        cmd_file = folder / "bench-command.json"
        if (folder / "metrics.json").is_file() and cmd_file.is_file():
            if json.loads(cmd_file.read_text(encoding="utf-8"))["args"] == args:
                cmd = ["tunelab", "train", "--quiet", *args, f"output_dir={folder}"]
                metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
                log.append({"command": shown_command(cmd), "seconds": None, "reused": "finished in an earlier job"})
                return metrics
    return None


def sh(args: list[str], out: Path, log: list) -> dict:
    """Run `tunelab train ARGS output_dir=OUT`; returns its metrics.json and records the command and seconds."""
    cmd = ["tunelab", "train", "--quiet", *args, f"output_dir={out}"]
    shown = shown_command(cmd)
    print("$ " + shown, flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([str(ROOT / ".venv/bin/tunelab"), *cmd[1:]], env=env, capture_output=True, text=True)
    seconds = round(time.perf_counter() - start, 1)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}) after {seconds} s:\n{proc.stderr[-4000:]}")
    log.append({"command": shown, "seconds": seconds})
    (out / "bench-command.json").write_text(json.dumps({"args": args}), encoding="utf-8")
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def scores(split: dict) -> dict:
    keys = ("loss", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "perplexity", "accuracy", "macro_f1")
    return {k: round(split[k], 4) for k in keys if isinstance(split.get(k), float)}


def vocabulary_scores(run_dir: Path, predictions: list[dict]) -> dict:
    """BLEU/chrF against references passed through the run's own tokenizer normalizer (an uncased WordPiece
    vocabulary lower-cases and strips accents, so its output cannot match 'Männer'; this says what the model scores on
    what its vocabulary can write). Not the standard figure: the standard one is against the real references."""
    from transformers import AutoTokenizer

    from tunelab.evaluation import text_metrics

    norm = AutoTokenizer.from_pretrained(str(run_dir / "model")).backend_tokenizer.normalizer
    if norm is None:
        return {}
    outs = [norm.normalize_str(p["output"]) for p in predictions]
    refs = [[norm.normalize_str(r) for r in p["references"]] for p in predictions]
    return {
        "bleu_normalized_refs": round(text_metrics.bleu(outs, refs), 4),
        "chrf_normalized_refs": round(text_metrics.chrf(outs, refs), 4),
    }


def sized_to(minutes: float, args: list[str], probe_dir: Path, log: list) -> tuple[list[str], dict]:
    """``args`` with train.max_steps set so training takes about ``minutes`` here: a 15-step probe run (no
    generations) measures seconds per step on this machine as loaded now; the probe is recorded too."""
    n = 15
    quick = [a for a in args if not a.startswith(("task.eval_generations=", "data.max_dev_rows="))]
    m = sh([*quick, "task.eval_generations=0", "data.max_dev_rows=32", f"train.max_steps={n}", *BASE], probe_dir, log)
    # the first ~10 steps can be far slower than the rest (measured 67 vs ~390 tokens/s for BERT2BERT): take the rate from
    # the logged windows (steps, tokens/s) and count the start-up once
    windows, last = [], 0
    for line in (probe_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "tokens_per_s" in rec:
            windows.append((rec["step"] - last, rec["tokens_per_s"]))
            last = rec["step"]
    tokens = m["train_seconds"] / sum(k / rate for k, rate in windows)  # tokens per step, as logged
    per_step = tokens / windows[-1][1]
    start_up = m["train_seconds"] - n * per_step
    steps = max(10, int((minutes * 60 - start_up) / per_step) // 10 * 10)
    return [*args, f"train.max_steps={steps}", f"train.eval_every={steps}"], {
        "probe_steps": n,
        "seconds_per_step": round(per_step, 2),
        "start_up_seconds": round(start_up, 1),
        "minutes": minutes,
        "steps": steps,
    }


def run_generation_part(part: str, stamp: str) -> tuple[list, list]:
    rows, log = [], []
    for spec in PARTS[part]:
        run_dir = WORK / f"{part}-{stamp}"
        args, probe = spec["args"], None
        if "minutes" in spec and os.environ.get("BENCH_STEPS"):  # a fixed step count: no probe
            steps = int(os.environ["BENCH_STEPS"])
            args, probe = [*args, f"train.max_steps={steps}", f"train.eval_every={steps}"], {"steps": steps}
        elif "minutes" in spec:  # BENCH_MINUTES=M trains for M minutes instead (a shorter lock slot)
            minutes = float(os.environ.get("BENCH_MINUTES", spec["minutes"]))
            args, probe = sized_to(minutes, args, WORK / f"{part}-probe-{stamp}", log)
        m = sh(args + BASE, run_dir, log)
        row = {"run": spec["name"], "dev": scores(m["dev"]), "train_seconds": m["train_seconds"], "steps": m["steps"]}
        if probe:
            row["sized_by"] = probe
        if part == "bert2bert":
            row["dev"].update(vocabulary_scores(run_dir, m["dev"]["predictions"]))
        if "baseline" in m:
            row["untuned"] = scores(m["baseline"])
        row["samples"] = m["dev"].get("samples", [])[:3]
        rows.append(row)
    return rows, log


def dapt_slices() -> dict[str, Path]:
    """AG News (one 10,001-row file, no test split) cut three ways: the classifier trains on the first 1,000 rows and
    is scored on the last 2,000 (never trained on, by either step); MLM reads the text of every row but those 2,000."""
    DAPT_DATA.mkdir(parents=True, exist_ok=True)
    lines = (AG / "train.tsv").read_text(encoding="utf-8").splitlines()
    parts = {"train": lines[:CLS_ROWS], "dev": lines[-EVAL_ROWS:], "mlm": lines[:-EVAL_ROWS]}
    paths = {}
    for name, rows in parts.items():
        paths[name] = DAPT_DATA / f"{name}.tsv"
        paths[name].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return paths


def run_dapt_mlm(stamp: str) -> tuple[list, list]:
    """Step 1: minilm-l6 MLM on AG News text (labels unused); the run folder is recorded for step 2."""
    log: list = []
    data = dapt_slices()
    mlm_run = WORK / f"dapt-mlm-{stamp}"
    mlm = sh([*DAPT_MLM, f"data.train={data['mlm']}", *BASE], mlm_run, log)
    row = {
        "run": "MLM step (minilm-l6, full)",
        "run_dir": str(mlm_run),
        "mlm_texts": sum(1 for _ in data["mlm"].open(encoding="utf-8")),
        "dev": scores(mlm["dev"]),
        "steps": mlm["steps"],
        "train_seconds": mlm["train_seconds"],
    }
    return [row], log


def run_dapt_cls(stamp: str) -> tuple[list, list]:
    """Step 2: 3 seeds x (without, with DAPT) classifiers on the first 1,000 rows, scored on the last 2,000; the MLM
    step is the latest `dapt-mlm` record."""
    step1 = json.loads((results_dir() / "seq2seq-dapt-mlm.json").read_text(encoding="utf-8"))
    mlm_row, log = step1["runs"][0], list(step1["commands"])
    data = dapt_slices()
    cls = [
        "task=classification",
        f"data.train={data['train']}",
        f"data.dev={data['dev']}",
        "data.text_column=0",
        "data.label_column=1",
        "data.has_header=false",
        "model.max_length=64",
        "method=full",
        "train.lr=5e-5",
        "train.batch_size=32",
        "train.epochs=2",
        "train.keep_checkpoints=none",
        "train.threads=2",
        "speed.cache=false",
    ]
    out = [mlm_row]
    for label, model in (("no DAPT", "minilm-l6"), ("DAPT", mlm_row["run_dir"])):
        accs, f1s = [], []
        for seed in SEEDS:
            prefix, args = (
                f"dapt-cls-{'dapt' if model != 'minilm-l6' else 'base'}-{seed}",
                [*cls, f"model.name={model}", f"train.seed={seed}"],
            )
            m = finished_run(prefix, args, log) or sh(args, WORK / f"{prefix}-{stamp}", log)
            accs.append(round(m["dev"]["accuracy"], 4))
            f1s.append(round(m["dev"]["macro_f1"], 4))
        out.append(
            {
                "run": f"classifier, {label}",
                "accuracy_per_seed": accs,
                "accuracy_mean": round(sum(accs) / len(accs), 4),
                "macro_f1_per_seed": f1s,
                "macro_f1_mean": round(sum(f1s) / len(f1s), 4),
            }
        )
    return out, log


def run_rescore(stamp: str) -> tuple[list, list]:
    """Score a trained translation run (argv[2], default: the latest `translation` record's run folder) on ALL 1,014
    Multi30k val sentences with the run's own settings (greedy, task.eval_max_new_tokens), and on its first 200 again
    (the figure training reported, recomputed from the same generations)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tunelab import runs
    from tunelab.evaluation import text_metrics
    from tunelab.tasks import TASKS

    run_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if run_dir is None:
        record = json.loads((results_dir() / "seq2seq-translation.json").read_text(encoding="utf-8"))
        run_dir = WORK / record["commands"][0]["command"].rsplit("output_dir=", 1)[1]
    run = runs.load_run(str(run_dir))
    run.model.eval()
    task = TASKS["seq2seq"]
    pairs = task.read(run.cfg, str(M30K / "val.en.gz")).rows
    run.cfg = run.cfg.model_copy(update={"task": run.cfg.task.model_copy(update={"eval_generations": len(pairs)})})
    start = time.perf_counter()
    m = task.evaluate(run, pairs, "val.en.gz", lambda _m: None)
    seconds = round(time.perf_counter() - start, 1)
    preds = m["predictions"]
    first = preds[:200]
    outs, refs = [p["output"] for p in first], [p["references"] for p in first]
    command = f"bench/seq2seq.py rescore {run_dir}"
    log = [{"command": command, "seconds": seconds}]
    row = {
        "run": f"{run_dir.name}: {run.cfg.model.name} {run.cfg.method.name}, greedy, all val sentences",
        "sentences": len(preds),
        "dev": scores(m),
        "first_200": {"bleu": round(text_metrics.bleu(outs, refs), 4), "chrf": round(text_metrics.chrf(outs, refs), 4)},
        "eval_seconds": seconds,
    }
    return [row], log


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else ""
    steps = {"dapt-mlm": run_dapt_mlm, "dapt-cls": run_dapt_cls, "rescore": run_rescore}
    if part not in (*PARTS, *steps):
        sys.exit(f"usage: bench/seq2seq.py {{{'|'.join([*PARTS, *steps])}}}")
    WORK.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    before = load_average()
    rep = machine(2)
    rows, log = steps[part](stamp) if part in steps else run_generation_part(part, stamp)
    folder = results_dir()
    result = {
        "part": part,
        "machine": rep,
        "load_before": before,
        "load_after": load_average(),
        "runs": rows,
        "commands": log,
    }
    (folder / f"seq2seq-{part}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    md = header(
        rep, before, result["load_after"], f"flock /tmp/tunelab-cpu.lock .venv/bin/python bench/seq2seq.py {part}"
    )
    md += ["Runs (each `tunelab train` command as run):", ""] + [f"- `{c['command']}` ({c['seconds']} s)" for c in log]
    md += ["", "Results:", "", "```json", json.dumps(rows, indent=1, ensure_ascii=False), "```", ""]
    (folder / f"seq2seq-{part}.md").write_text("\n".join(md), encoding="utf-8")
    print(json.dumps(rows, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
