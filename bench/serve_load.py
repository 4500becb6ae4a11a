"""Load test of `tunelab serve` on 127.0.0.1: 1 client, then N concurrent clients, against smollm2-135m.

Starts the server as a subprocess, runs each phase for a fixed time, checks every response (status,
JSON shape, SSE framing ending in [DONE]) and writes bench/results/serve_load.md. Everything stops by
itself: phases are time-bounded, requests have a timeout, the server is terminated at the end.

    .venv/bin/python bench/serve_load.py [--clients 32] [--duration 60] [--single-duration 30]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
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


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies, self.tokens, self.codes, self.malformed = [], 0, {}, []

    def add(self, code: int, latency: float, tokens: int = 0, problem: str | None = None):
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1
            if code == 200 and problem is None:
                self.latencies.append(latency)
                self.tokens += tokens
            if problem:
                self.malformed.append(problem)


def one_request(http: httpx.Client, url: str, i: int, max_tokens: int, tally: Tally) -> None:
    stream = i % 4 == 3  # every fourth request streams
    body = {
        "model": "smollm2-135m",
        "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    start = time.perf_counter()
    try:
        with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
            raw = r.read().decode()
            code = r.status_code
            retry_after = r.headers.get("retry-after")
    except httpx.HTTPError as exc:
        tally.add(-1, 0, problem=f"transport error {type(exc).__name__}: {exc}")
        return
    latency = time.perf_counter() - start
    if code == 429:
        tally.add(429, latency, problem=None if retry_after else "429 without Retry-After")
        return
    if code != 200:
        tally.add(code, latency, problem=f"status {code}: {raw[:200]}")
        return
    tokens, problem = check_stream(raw) if stream else check_json(raw)
    tally.add(200, latency, tokens, problem)


def check_json(raw: str) -> tuple[int, str | None]:
    try:
        obj = json.loads(raw)
        msg = obj["choices"][0]["message"]
        assert msg["role"] == "assistant" and isinstance(msg["content"], str)
        assert obj["choices"][0]["finish_reason"] in ("stop", "length")
        used = obj["usage"]["completion_tokens"]
        assert isinstance(used, int) and used > 0
        return used, None
    except Exception as exc:  # noqa: BLE001 - any deviation is a malformed response
        return 0, f"malformed JSON response ({exc!r}): {raw[:200]}"


def check_stream(raw: str) -> tuple[int, str | None]:
    events = [e for e in raw.split("\n\n") if e.strip()]
    if not events or events[-1] != "data: [DONE]" or not all(e.startswith("data: ") for e in events):
        return 0, f"bad SSE framing: {raw[-200:]}"
    try:
        chunks = [json.loads(e[6:]) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
        return chunks[-1]["usage"]["completion_tokens"], None
    except Exception as exc:  # noqa: BLE001
        return 0, f"malformed stream ({exc!r})"


def phase(url: str, clients: int, seconds: float, max_tokens: int) -> dict:
    tally, deadline = Tally(), time.monotonic() + seconds

    def client(k: int):
        with httpx.Client(timeout=180) as http:
            i = k
            while time.monotonic() < deadline:
                one_request(http, url, i, max_tokens, tally)
                i += clients

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    lat = sorted(tally.latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "ok": len(lat),
        "codes": tally.codes,
        "tokens": tally.tokens,
        "tokens_per_s": tally.tokens / elapsed,
        "p50": pct(0.50),
        "p95": pct(0.95),
        "mean_latency": statistics.mean(lat) if lat else float("nan"),
        "malformed": tally.malformed,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "tunelab.cli",
        "serve",
        "smollm2-135m",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-batch-size",
        str(args.clients),
        "--max-wait-ms",
        "20",
        "--queue-size",
        str(args.queue_size),
        "--max-tokens",
        str(args.max_tokens),
        "--threads",
        str(args.threads),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    for _ in range(600):  # up to 5 minutes to load
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("server did not come up in 5 minutes")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60, help="seconds of the many-client phase")
    ap.add_argument("--single-duration", type=float, default=30, help="seconds of the one-client phase")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--queue-size", type=int, default=64, help=">= clients, so a correct server never answers 429")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_load.md"))
    args = ap.parse_args()
    port = free_port()
    proc = start_server(args, port)
    url = f"http://127.0.0.1:{port}"
    try:
        phase(url, 1, 5, args.max_tokens)  # warm-up, not reported
        single = phase(url, 1, args.single_duration, args.max_tokens)
        many = phase(url, args.clients, args.duration, args.max_tokens)
        metrics = httpx.get(url + "/metrics").text
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    write_report(args, single, many, metrics)
    bad = (
        sum(n for c, n in many["codes"].items() if c >= 500 or c < 0)
        + len(many["malformed"])
        + len(single["malformed"])
    )
    unexpected_429 = many["codes"].get(429, 0) if args.queue_size >= args.clients else 0
    return 1 if bad or unexpected_429 else 0


def write_report(args, single: dict, many: dict, metrics: str) -> None:
    rows = "\n".join(
        f"| {r['clients']} | {r['seconds']} | {r['ok']} | {r['tokens']} | {r['tokens_per_s']:.1f} | "
        f"{r['p50']:.2f} | {r['p95']:.2f} | {r['codes']} | {len(r['malformed'])} |"
        for r in (single, many)
    )
    batch = [line for line in metrics.splitlines() if line.startswith("tunelab_batch_size_")]
    text = f"""# `tunelab serve` load test

Server: `tunelab serve smollm2-135m --max-batch-size {args.clients} --max-wait-ms 20 --queue-size {args.queue_size} --threads {args.threads}`
on 127.0.0.1 (CPU). Clients: chat completions, greedy, max_tokens {args.max_tokens}, every fourth request streamed;
each client sends its next request as soon as the previous one is answered.

| clients | seconds | ok requests | tokens | tokens/s | p50 latency (s) | p95 latency (s) | status codes | malformed |
|---|---|---|---|---|---|---|---|---|
{rows}

Throughput with {args.clients} clients is {many["tokens_per_s"] / max(single["tokens_per_s"], 1e-9):.1f}x the single-client figure.
Zero 5xx and zero malformed responses are required; with queue_size >= clients, any 429 is also a failure.

Batch sizes seen by the worker (`/metrics`, cumulative over both phases):

```
{chr(10).join(batch)}
```
"""
    if many["malformed"] or single["malformed"]:
        text += (
            "\nMalformed responses:\n\n"
            + "\n".join(f"- {m}" for m in (single["malformed"] + many["malformed"])[:20])
            + "\n"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
