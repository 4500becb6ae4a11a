"""Each speed lever on/off, measured on tunelab's side of bench/speed.py (`bench/speed.py --levers`).

LM levers on instruct-lora (smollm2-135m, LoRA, Alpaca); classification levers (dropout, compile with bucketed
lengths, threads) on sst2-full and sst2-lora (speed and dev accuracy); the encoded-data cache as tokenising time,
cold vs warm. Which precision is the default follows `train.precision: auto` on this machine; the other one is a
lever row (left out where bf16 has no native kernel: it runs 20-50x slower there and `tunelab doctor` shows why).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

LM_ROWS = 96


def lm_variants(machine: dict, threads: int) -> list[tuple[str, dict, dict, int]]:
    """(name, tunelab config sections, env, threads) for each LM row; the first is the defaults."""
    chosen = machine["precision_auto"]["picks"]
    other = "fp32" if chosen == "bf16" else "bf16"
    rows = [
        (f"defaults ({chosen} by auto, chunked loss, length-grouped, tcmalloc)", {}, {}, threads),
        ("tcmalloc off (TUNELAB_TCMALLOC=0)", {}, {"TUNELAB_TCMALLOC": "0"}, threads),
    ]
    if machine["bf16_native"]["ok"] or other == "fp32":
        rows.append((f"train.precision={other}", {"train": {"precision": other}}, {}, threads))
    rows += [
        ("speed.ce_chunk=0 (full-vocabulary logits)", {"speed": {"ce_chunk": 0}}, {}, threads),
        ("task.packing=true (per-document attention)", {"task": {"packing": True}}, {}, threads),
        ("train.length_grouping=false", {"train": {"length_grouping": False}}, {}, threads),
        ("speed.compile=true (dynamic shapes)", {"speed": {"compile": True}}, {}, threads),
        (
            "speed.compile=true, speed.pad_multiple=64 (bucketed lengths, static shapes)",
            {"speed": {"compile": True, "pad_multiple": 64}},
            {},
            threads,
        ),
        (
            "OMP_PROC_BIND=close OMP_PLACES=cores (threads pinned)",
            {},
            {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"},
            threads,
        ),
    ]
    if threads > 1:
        rows.append((f"1 thread instead of {threads}", {}, {}, 1))
    return rows


def cls_variants() -> list[tuple[str, dict]]:
    return [
        ("defaults (model's own dropout 0.1)", {}),
        ("model.dropout=0", {"model": {"dropout": 0.0}}),
        (
            "speed.compile=true, speed.pad_multiple=16 (bucketed, static shapes)",
            {"speed": {"compile": True, "pad_multiple": 16}},
        ),
    ]


def _side(spec: dict, sections: dict, env: dict, work: Path, tag: str) -> dict:
    from bench import speed

    s = {**spec, "tunelab_sections": sections}
    sub = work / tag
    sub.mkdir()
    return speed.run_side("tunelab", s, sub, None if env.get("TUNELAB_TCMALLOC") == "0" else _tcmalloc(), env)


def _tcmalloc():
    from tunelab import launch

    return launch.find_tcmalloc()


def _row(name: str, r: dict, base: float | None) -> str:
    rate = r["tokens"] / r["train_seconds"]
    rel = f"{rate / base:.2f}x" if base else "1.00x"
    return f"| {name} | {rate:.0f} | {rel} | {r['train_seconds']:.1f} | {r['wall_seconds']:.1f} | {r['rss_mb']:.0f} | {r['dev_metric']:.4f} |"


def lm_levers(threads: int, work: Path, log, machine: dict, rows: int) -> list[str]:
    from bench import speed

    spec = speed.write_subsets(
        {
            **speed.SCENARIOS["instruct-lora"],
            "rows": rows,
            "dev_rows": 16,
            "threads": threads,
            "precision": machine["precision_auto"]["picks"],
        },
        work,
    )
    lines = [
        f"## LM levers: smollm2-135m, LoRA r=8 (all linear layers), {rows} Alpaca examples, max_length 512, batch 8, {threads} threads",
        "",
        "| variant | useful tok/s | vs defaults | train s | wall s | peak RSS MB | dev loss |",
        "|---|---|---|---|---|---|---|",
    ]
    base = None
    for i, (name, sections, env, n) in enumerate(lm_variants(machine, threads)):
        log(f"lever: {name} ...")
        r = _side({**spec, "threads": n}, sections, env, work, f"lm{i}")
        lines.append(_row(name, r, base))
        base = base or r["tokens"] / r["train_seconds"]
        log(lines[-1])
    if not machine["bf16_native"]["ok"]:
        mm = machine["matmul_gflops"]
        lines += [
            "",
            f"train.precision=bf16 not run: no native bf16 kernel here (matmul bf16 {mm['bf16']:.1f} vs fp32 {mm['fp32']:.1f} GFLOP/s).",
        ]
    return lines


def cls_levers(threads: int, work: Path, log, machine: dict, rows: int | None) -> list[str]:
    from bench import speed

    n = rows or speed.SCENARIOS["sst2-full"]["rows"]
    lines = [
        "",
        f"## Classification levers: minilm-l6 on SST-2 ({n:,} training rows, 1 epoch, full dev set), {threads} threads",
        "",
        "| scenario, variant | useful tok/s | vs defaults | train s | wall s | peak RSS MB | dev accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("sst2-full", "sst2-lora"):
        data_dir = work / name
        data_dir.mkdir()
        spec = speed.write_subsets(
            {**speed.SCENARIOS[name], "rows": n, "threads": threads, "precision": machine["precision_auto"]["picks"]},
            data_dir,
        )
        base = None
        for i, (label, sections) in enumerate(cls_variants()):
            log(f"lever: {name} {label} ...")
            r = _side(spec, sections, {}, work, f"{name}-{i}")
            lines.append(_row(f"{name}, {label}", r, base))
            base = base or r["tokens"] / r["train_seconds"]
            log(lines[-1])
    return lines


def cache_lever(log) -> list[str]:
    """Tokenising the whole Alpaca train file for smollm2-135m: cold (encode + write) vs warm (cache hit)."""
    from bench import speed
    from tunelab import config as config_mod
    from tunelab.data import templates
    from tunelab.models import load as model_load
    from tunelab.tasks import causal_lm

    os.environ["TUNELAB_CACHE"] = tempfile.mkdtemp(prefix="lever-cache-")
    path = str(speed.DATA / "alpaca" / "train.json")
    cfg = config_mod.validate(
        {"task": "causal_lm", "model": {"name": "smollm2-135m", "max_length": 512}, "data": {"train": path}}
    )
    tok = model_load.load_tokenizer(model_load.resolve("smollm2-135m"))
    rows = templates.read_examples(path, on_error="skip").rows
    times = []
    for _ in range(2):
        t = time.perf_counter()
        causal_lm.encode_split(
            cfg, tok, causal_lm.LMOptions(templates.chat_template(tok)), rows, path, log=lambda m: None
        )
        times.append(time.perf_counter() - t)
    return [
        "",
        f"## Encoded-data cache: {len(rows):,} Alpaca rows, smollm2-135m tokenizer",
        "",
        "| run | seconds |",
        "|---|---|",
        f"| first (tokenise + write cache) | {times[0]:.2f} |",
        f"| second (cache hit) | {times[1]:.2f} |",
    ]


def run(
    threads: int,
    log,
    machine: dict,
    command: str,
    lm_rows: int = LM_ROWS,
    cls_rows: int | None = None,
    parts: str = "lm,cls,cache",
) -> str:
    from bench import common

    work = Path(tempfile.mkdtemp(prefix="levers-"))
    load0 = common.load_average()
    body: list[str] = []
    wanted = parts.split(",")
    if "lm" in wanted:
        body += lm_levers(threads, work, log, machine, lm_rows)
    if "cls" in wanted:
        body += cls_levers(threads, work, log, machine, cls_rows)
    if "cache" in wanted:
        body += cache_lever(log)
    lines = ["# Speed levers, each on/off (tunelab side only)", ""]
    lines += common.header(machine, load0, common.load_average(), command)
    lines += [
        "Time = first step start to last step end; each row differs from the defaults in one setting only (same seed and data "
        "order, so the dev column shows a lever does not change what is learned).",
        "",
    ] + body
    text = "\n".join(lines) + "\n"
    log(text)
    return text


if __name__ == "__main__":
    print(json.dumps({"note": "run through bench/speed.py --levers"}))
