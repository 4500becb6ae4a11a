"""Each speed lever on/off, measured on tunelab's side of bench/speed.py (`bench/speed.py --levers`).

LM levers on instruct-lora (smollm2-135m, LoRA, Alpaca); the dropout lever on sst2-full and sst2-lora
(speed and dev accuracy); the encoded-data cache as tokenising time, cold vs warm.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

LM_ROWS = 96
LM_VARIANTS = [  # (name, tunelab config sections, env)
    ("defaults (bf16, bf16 frozen weights, chunked loss, length-grouped, tcmalloc)", {}, {}),
    ("tcmalloc off (TUNELAB_TCMALLOC=0)", {}, {"TUNELAB_TCMALLOC": "0"}),
    ("train.precision=fp32", {"train": {"precision": "fp32"}}, {}),
    ("speed.bf16_frozen_weights=false", {"speed": {"bf16_frozen_weights": False}}, {}),
    ("speed.ce_chunk=0 (full-vocabulary logits)", {"speed": {"ce_chunk": 0}}, {}),
    ("task.packing=true", {"task": {"packing": True}}, {}),
    ("train.length_grouping=false", {"train": {"length_grouping": False}}, {}),
    ("speed.compile=true", {"speed": {"compile": True}}, {}),
    ("speed.gradient_checkpointing=true", {"speed": {"gradient_checkpointing": True}}, {}),
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


def _row(name: str, r: dict, base: float | None, metric: str) -> str:
    rate = r["tokens"] / r["train_seconds"]
    rel = f"{rate / base:.2f}x" if base else "1.00x"
    return f"| {name} | {rate:.0f} | {rel} | {r['train_seconds']:.1f} | {r['wall_seconds']:.1f} | {r['rss_mb']:.0f} | {r['dev_metric']:.4f} |"


def lm_levers(threads: int, work: Path, log) -> list[str]:
    from bench import speed

    spec = speed.write_subsets(
        {**speed.SCENARIOS["instruct-lora"], "rows": LM_ROWS, "dev_rows": 16, "threads": threads}, work
    )
    lines = [
        f"## LM levers: smollm2-135m, LoRA, {LM_ROWS} Alpaca examples, max_length 512, batch 8, {threads} threads",
        "",
        "| variant | useful tok/s | vs defaults | train s | wall s | peak RSS MB | dev loss |",
        "|---|---|---|---|---|---|---|",
    ]
    base = None
    for i, (name, sections, env) in enumerate(LM_VARIANTS):
        log(f"lever: {name} ...")
        r = _side(spec, sections, env, work, f"lm{i}")
        lines.append(_row(name, r, base, "dev loss"))
        base = base or r["tokens"] / r["train_seconds"]
        log(lines[-1])
    if threads > 1:
        r = _side({**spec, "threads": 1}, {}, {}, work, "lm-1thread")
        lines.append(_row("1 thread instead of " + str(threads), r, base, "dev loss"))
    return lines


def dropout_levers(threads: int, work: Path, log) -> list[str]:
    from bench import speed

    lines = [
        "",
        f"## Dropout: minilm-l6 on SST-2 (2,000 training rows, 1 epoch, full dev set), {threads} threads",
        "",
        "| scenario, model.dropout | useful tok/s | vs model's own | train s | wall s | peak RSS MB | dev accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("sst2-full", "sst2-lora"):
        data_dir = work / name
        data_dir.mkdir()
        spec = speed.write_subsets({**speed.SCENARIOS[name], "threads": threads}, data_dir)
        base = None
        for label, value in (("null (model's own, 0.1)", None), ("0.0", 0.0)):
            log(f"lever: {name} dropout {label} ...")
            r = _side(spec, {"model": {"dropout": value}}, {}, work, f"{name}-{value}")
            lines.append(_row(f"{name}, {label}", r, base, "dev accuracy"))
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


def run(threads: int, log) -> str:
    work = Path(tempfile.mkdtemp(prefix="levers-"))
    started = time.strftime("%Y-%m-%d %H:%M")
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    lines = ["# Speed levers, each on/off (tunelab side only)", ""]
    body = lm_levers(threads, work, log) + dropout_levers(threads, work, log) + cache_lever(log)
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    lines += [
        f"{started}; load average before/after {' '.join(load0)} / {' '.join(load1)}. Time = first step start to last step end; "
        "each row differs from the defaults in one setting only.",
        "",
    ] + body
    text = "\n".join(lines) + "\n"
    log(text)
    return text


if __name__ == "__main__":
    print(json.dumps({"note": "run through bench/speed.py --levers"}))
