"""Acceptance figures for GGUF export and the llama.cpp back-end with SmolLM2-135M + LoRA (issue 16).

Stages (each reusing what earlier ones left in runs/bench-gguf/):
    train   tunelab train examples/compress/smollm2-lora.yaml            (LoRA on 400 Alpaca examples)
    export  tunelab export RUN OUT --format gguf --dtype f16|q8_0|q4_0    (merged, converted, parity-checked:
            10 dev prompts x 32 greedy tokens vs the fp32 source, on llama.cpp and on transformers reading the GGUF)
    serve   tokens/s of `tunelab serve` at 1 and 8 concurrent clients: the LoRA run and the merged fp32 model on the
            torch back-end, the f16 and q8_0 files on --backend llamacpp
    report  bench/results/gguf-smollm2.md (runs the serve stage first when its figures are missing)

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/gguf_smollm2.py [--stages train,export,serve,report] [--duration 40]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench-gguf"
SOURCE = RUNS / "smollm2-lora"
RESULT = ROOT / "bench" / "results" / "gguf-smollm2.md"
TUNELAB = str(ROOT / ".venv" / "bin" / "tunelab")
DTYPES = ("f16", "q8_0", "q4_0")
QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "Write a haiku about rain.",
    "Explain what a noun is.",
    "Give me a tip for sleeping well.",
    "What is 12 times 7?",
    "Describe a cat in one sentence.",
    "Why is the sky blue?",
]
SERVED = {  # label -> (run folder, backend)
    "torch, LoRA run (peft, unmerged)": (SOURCE, "torch"),
    "torch, merged fp32 (GGUF f16 read back)": (RUNS / "gguf-f16", "torch"),
    "llama.cpp, f16": (RUNS / "gguf-f16", "llamacpp"),
    "llama.cpp, q8_0": (RUNS / "gguf-q8_0", "llamacpp"),
}


def sh(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def train() -> None:
    if not (SOURCE / "metrics.json").is_file():
        sh([TUNELAB, "train", "--quiet", "examples/compress/smollm2-lora.yaml"])


def export() -> None:
    for dtype in DTYPES:
        out = RUNS / f"gguf-{dtype}"
        if not (out / "cost.json").is_file():
            sh(
                [
                    TUNELAB,
                    "export",
                    str(SOURCE.relative_to(ROOT)),
                    str(out.relative_to(ROOT)),
                    "--format",
                    "gguf",
                    "--dtype",
                    dtype,
                    "--parity-prompts",
                    "10",
                    "--parity-tokens",
                    "32",
                    "--threads",
                    "2",
                ]
            )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(base: str, clients: int, duration: float, max_tokens: int) -> dict:
    """``clients`` threads send chat requests back to back for ``duration`` s; completion tokens/s over the wall time."""
    stop = time.monotonic() + duration
    lock, done = threading.Lock(), {"tokens": 0, "requests": 0, "errors": 0, "latency": []}

    def worker(i: int) -> None:
        with httpx.Client(timeout=120) as client:
            n = i
            while time.monotonic() < stop:
                start = time.monotonic()
                r = client.post(
                    base + "/v1/chat/completions",
                    json={
                        "model": "m",
                        "max_tokens": max_tokens,
                        "temperature": 0,
                        "messages": [{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}],
                    },
                )
                n += clients
                with lock:
                    if r.status_code == 200:
                        done["tokens"] += r.json()["usage"]["completion_tokens"]
                        done["requests"] += 1
                        done["latency"].append(time.monotonic() - start)
                    else:
                        done["errors"] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    lat = sorted(done["latency"]) or [float("nan")]
    return {
        "clients": clients,
        "tokens_per_s": round(done["tokens"] / wall, 1),
        "requests": done["requests"],
        "errors": done["errors"],
        "median_latency_s": round(lat[len(lat) // 2], 2),
        "wall_s": round(wall, 1),
    }


def serve(duration: float, max_tokens: int = 64) -> None:
    results = {}
    for label, (run, backend) in SERVED.items():
        port = _port()
        proc = subprocess.Popen(
            [
                TUNELAB,
                "serve",
                f"m={run}",
                "--backend",
                backend,
                "--port",
                str(port),
                "--max-tokens",
                "128",
                "--threads",
                "2",
            ],
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            _load(base, 1, 5, max_tokens)  # warm-up
            results[label] = [_load(base, n, duration, max_tokens) for n in (1, 8)]
            print(label, results[label], flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    (RUNS / "serve.json").write_text(
        json.dumps({"duration_s": duration, "max_tokens": max_tokens, "results": results}, indent=2)
    )


def report(duration: float) -> None:
    from tunelab.compress.cost import machine

    if not (RUNS / "serve.json").is_file() and all((run / "model").is_dir() for run, _ in SERVED.values()):
        serve(duration)  # the report needs the serve figures: measure them once when missing

    m = machine()
    lines = [
        "# GGUF export and the llama.cpp back-end: SmolLM2-135M + LoRA (issue 16)",
        "",
        "Source: `examples/compress/smollm2-lora.yaml` (LoRA r=16 on all linear layers, 400 Alpaca examples, 1 epoch); "
        "its dev loss is measured on the first 40 Alpaca dev examples.",
        f"Machine: {m['cpu']} ({' '.join(m['flags'])}); 2 threads; torch {m['versions']['torch']}.",
        "",
        "## Export: size, dev loss, greedy parity (10 dev prompts x 32 tokens vs the fp32 merged source)",
        "",
        "| dtype | size MB (source fp32 state dict -> file) | dev loss source -> GGUF weights | identical prompts, llama.cpp | "
        "identical prompts, transformers reading the GGUF | first differences (token: source top-2 margin) | greedy tok/s torch fp32 / llama.cpp |",
        "|---|---|---|---|---|---|---|",
    ]
    for dtype in DTYPES:
        path = RUNS / f"gguf-{dtype}" / "cost.json"
        if not path.is_file():
            continue
        rec = json.loads(path.read_text())
        s, r, p = rec["source"], rec["result"], rec["parity"]
        llama = p["llamacpp"]
        diffs = (
            "; ".join(
                f"{d['first_difference']}: {d['reference_margin_at_difference']:.3f}"
                for d in llama.get("per_prompt", [])
                if not d["equal"]
            )
            or "none"
        )
        speed = rec["generation_tokens_per_s"]
        lines.append(
            f"| {dtype} | {s['size_mb']:.0f} -> {r['size_mb']:.0f} | {s['dev']['loss']:.4f} -> {r['dev']['loss']:.4f} | "
            f"{llama.get('identical', '-')}/{llama.get('prompts', '-')} | {p['torch_from_gguf']['identical']}/{p['torch_from_gguf']['prompts']} | "
            f"{diffs} | {speed['torch_fp32_source']} / {speed.get('llamacpp', '-')} |"
        )
    serve_path = RUNS / "serve.json"
    if serve_path.is_file():
        data = json.loads(serve_path.read_text())
        lines += [
            "",
            f"## `tunelab serve`: completion tokens/s, {data['max_tokens']} max tokens, greedy, {data['duration_s']:.0f} s per phase",
            "",
            "| served | 1 client tok/s | 1 client median latency s | 8 clients tok/s | 8 clients median latency s | errors |",
            "|---|---|---|---|---|---|",
        ]
        for label, (one, eight) in data["results"].items():
            lines.append(
                f"| {label} | {one['tokens_per_s']} | {one['median_latency_s']} | {eight['tokens_per_s']} | {eight['median_latency_s']} | "
                f"{one['errors'] + eight['errors']} |"
            )
    lines += ["", "## Commands", "", "```", "tunelab train examples/compress/smollm2-lora.yaml"]
    lines += [
        f"tunelab export runs/bench-gguf/smollm2-lora runs/bench-gguf/gguf-{d} --format gguf --dtype {d} --parity-prompts 10 --parity-tokens 32"
        for d in DTYPES
    ]
    lines += [
        "tunelab serve m=runs/bench-gguf/gguf-f16 --backend llamacpp --threads 2   # and --backend torch; the LoRA run on torch",
        "python bench/gguf_smollm2.py --stages serve,report",
        "```",
    ]
    RESULT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(RESULT.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="train,export,serve,report")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per load phase")
    args = ap.parse_args()
    for stage in args.stages.split(","):
        {
            "train": train,
            "export": export,
            "serve": lambda: serve(args.duration),
            "report": lambda: report(args.duration),
        }[stage]()


if __name__ == "__main__":
    sys.exit(main())
