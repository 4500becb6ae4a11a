"""`tunelab compare CONFIG --methods a,b,c`: the same data, seed and step budget for each method, one normal run each.

Config for method M = the YAML (its ``method:`` section kept only if it names M) -> M's
defaults below -> the command line's overrides for every method -> ``--set M.key=value``.
Each method trains in its own process (``tunelab train``), so a crash cannot take the
others down and its peak memory is its own: peak RSS is the child's ``ru_maxrss`` from
``os.wait4`` (the whole process: Python, torch, model, activations, optimizer state).
Finished methods are skipped when the command is rerun; unfinished ones resume.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tunelab import config as config_mod
from tunelab import runs
from tunelab.errors import ConfigError, TunelabError
from tunelab.evaluation import compare_report, custom
from tunelab.methods import METHODS
from tunelab.recipes import finetune
from tunelab.tasks import TASKS
from tunelab.training import checkpoint

# sensible starting points: small adapters want larger steps than full fine-tuning; prompts the largest
LORA_LR = ["train.lr=1e-3"]
DEFAULTS: dict[str, list[str]] = {
    "full": ["train.lr=5e-5"],
    "freeze": ["train.lr=1e-4"],
    "bitfit": ["train.lr=1e-3"],
    "lora": LORA_LR,
    "rslora": LORA_LR,
    "dora": LORA_LR,
    "loraplus": ["train.lr=5e-4"],
    "adalora": ["train.lr=2e-3"],
    "ia3": ["train.lr=3e-3"],
    "adapter": ["train.lr=1e-3"],
    "prefix": ["train.lr=1e-2"],
    "p-tuning": ["train.lr=3e-2"],
    "prompt-tuning": ["train.lr=3e-2"],
}


def method_config(
    path, overrides: list[str], per_method: dict[str, list[str]], name: str, out_dir: Path
) -> config_mod.RunConfig:
    """The run config of one method in the comparison (see the module docstring for the order)."""
    base = config_mod.load(path, overrides)
    reset = [] if base.method.name == name else [f"method={name}"]
    items = (
        reset + DEFAULTS.get(name, []) + list(overrides) + per_method.get(name, []) + [f"output_dir={out_dir / name}"]
    )
    return config_mod.load(path, items)


def parse_per_method(items: list[str]) -> dict[str, list[str]]:
    """`lora.train.lr=1e-4` -> {"lora": ["train.lr=1e-4"]}; the method must be known."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, _, rest = item.partition(".")
        if name not in METHODS or "=" not in rest:
            raise ConfigError(f"--set '{item}': expected METHOD.key=value with METHOD one of {', '.join(METHODS)}")
        out.setdefault(name, []).append(rest)
    return out


def run(path, overrides: list[str], methods: list[str] | None = None, per_method: list[str] = (), log=print) -> Path:
    """Train each method into CONFIG's output_dir/<method>, then write compare.md, compare.html and plots there."""
    cfg = config_mod.load(path, overrides)
    out = Path(cfg.output_dir)
    runs.check_writable_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    per = parse_per_method(list(per_method))
    unknown = [m for m in (methods or []) if m not in METHODS]
    if unknown:
        raise ConfigError(f"--methods: unknown {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    baseline, skipped = untrained_head(cfg, out, log)
    chosen = methods or [m for m in METHODS if m not in skipped]
    rows = [baseline]
    for name in chosen:
        if name in skipped:
            rows.append({"method": name, "status": "not applicable", "error": skipped[name]})
            continue
        rows.append(run_one(path, overrides, per, name, out, log))
    metric = custom.chosen(TASKS[cfg.task.name], cfg.train.metric, custom.load(cfg.eval.metrics))
    compare_report.write(out, rows, metric.name)
    return out


def untrained_head(cfg: config_mod.RunConfig, out: Path, log) -> tuple[dict, dict[str, str]]:
    """The base model (with its randomly initialised head, if the task adds one) evaluated untrained through the
    task's own ``evaluate``; and which methods cannot apply to it."""
    cache = out / "baseline.json"
    if cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        return saved["row"], saved["skipped"]
    task = TASKS[cfg.task.name]
    cfg = finetune.resolve(cfg, task)
    finetune.seed_everything(cfg.train.seed, cfg.train.threads)
    splits = finetune.read_splits(cfg, task, log)
    labels = task.label_space(splits["train"], cfg.data.train)
    tokenizer, model, head = runs.build_base(cfg, labels)
    skipped = {}
    for name, module in METHODS.items():
        try:
            module.apply(copy.deepcopy(model), module.Config(), head)
        except TunelabError as exc:
            skipped[name] = str(exc)
    model.eval()
    untrained = runs.LoadedRun(cfg, model, tokenizer, labels, head)
    metrics = task.evaluate(untrained, splits["dev"], cfg.data.dev or f"{cfg.data.train} (dev split)", log)
    name = "untrained head" if head else "untuned model"
    row = {
        "method": name,
        "status": "baseline",
        "metric": metrics[cfg.train.metric],
        "trainable": 0,
        "total": sum(p.numel() for p in model.parameters()),
    }
    checkpoint.write_json_atomic(cache, {"row": row, "skipped": skipped})
    log(f"{name}: dev {cfg.train.metric} {row['metric']:.4f}; not applicable here: {', '.join(skipped) or 'none'}")
    return row, skipped


def run_one(path, overrides, per: dict, name: str, out: Path, log) -> dict:
    """Train one method in a child process (or reuse its finished run) and collect its row."""
    record = out / "logs" / f"{name}.json"
    run_dir = out / name
    if (run_dir / "metrics.json").is_file() and record.is_file():
        log(f"{name}: finished earlier, skipping")
        return collect(name, run_dir, json.loads(record.read_text(encoding="utf-8")))
    try:
        cfg = method_config(path, overrides, per, name, out)
    except TunelabError as exc:
        return {"method": name, "status": "failed", "error": str(exc)}
    (out / "logs").mkdir(exist_ok=True)
    cfg_file = out / "logs" / f"{name}.yaml"
    cfg_file.write_text(config_mod.dump(cfg), encoding="utf-8")
    log(f"{name}: training ({', '.join(DEFAULTS.get(name, []) + per.get(name, [])) or 'config as given'})")
    measured = train_child(cfg_file, out / "logs" / f"{name}.log")
    if measured["returncode"] != 0:
        log(f"{name}: failed: {measured['error']}")
        return {"method": name, "status": "failed", "error": measured["error"], "peak_rss_mb": measured["peak_rss_mb"]}
    checkpoint.write_json_atomic(record, measured)
    return collect(name, run_dir, measured)


def train_child(cfg_file: Path, log_file: Path) -> dict:
    """`tunelab train CFG` in a child process; returns its exit code, wall time, peak RSS (MiB) and last error line."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]),
    )
    start = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tunelab.cli", "train", str(cfg_file), "--quiet"], stdout=err, stderr=err, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in log_file.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")] or lines[-1:]
    return {
        "returncode": proc.returncode,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "error": (errors[-1].removeprefix("error: ") if errors else f"exit code {proc.returncode}")
        if proc.returncode
        else None,
    }


def collect(name: str, run_dir: Path, measured: dict) -> dict:
    """One table row from a finished run folder and its process measurements."""
    final = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    cfg = runs.read_config(run_dir)
    records = [
        json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()
    ]
    speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
    weights = [f for f in (run_dir / "model").iterdir() if f.suffix in (".safetensors", ".bin")]
    return {
        "method": name,
        "status": "ok",
        "metric": final["dev"][cfg.train.metric],
        "trainable": final["trainable_parameters"],
        "total": final["total_parameters"],
        "adapter_bytes": sum(f.stat().st_size for f in weights),
        "train_seconds": final["train_seconds"],
        "tokens_per_s": round(sum(speeds) / len(speeds), 1) if speeds else None,
        "peak_rss_mb": measured["peak_rss_mb"],
        "lr": cfg.train.lr,
        "run_dir": name,
    }
