"""Load test of `tunelab serve` on 127.0.0.1: static vs continuous batching, side by side, on smollm2-135m.

For each batching mode the script starts the server as a subprocess, then runs 1, 8 and 32 concurrent streaming
clients (chat completions, greedy, stream_options.include_usage), each for a fixed time; every client sends its
next request as soon as the previous one ends. It checks every response (status, SSE framing ending in [DONE],
one finish reason, usage in the last chunk) and reports total completion tokens/s, p50/p95 time to first token
(first chunk with text) and end-to-end latency, status codes and malformed responses, in
bench/results/<cpu-kind>/serve_load.md. Phases are time-bounded, requests have a timeout, servers are terminated.

    .venv/bin/python bench/serve_load.py [--clients 1,8,32] [--durations 15,25,45] [--max-tokens 32]
        [--prompts questions|alpaca|support] [--system TEXT] [--modes static,continuous,continuous+prefix]

Prompts: ``questions`` (default) cycles 8 short questions; ``alpaca`` sends the instructions (plus input) of
../shared/data/alpaca/dev.json in file order; ``support`` the customer questions of
../shared/data/customer-support/dev.csv. ``--system`` puts one system message before every question (a shared
prefix; without it SmolLM2's chat template adds its own default system prompt). The report states the prompt and
reply lengths seen (from each stream's usage chunk) and how many replies ended at EOS vs max_tokens.
"""

from __future__ import annotations

import argparse
import csv
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


def load_prompts(kind: str) -> list[str]:
    """The user messages of a workload (see the module docstring)."""
    if kind == "questions":
        return QUESTIONS
    data = ROOT.parent / "shared" / "data"
    if kind == "alpaca":
        rows = json.loads((data / "alpaca" / "dev.json").read_text(encoding="utf-8"))
        return [(r["instruction"] + "\n\n" + r["input"]).strip() for r in rows]
    if kind == "support":
        with open(data / "customer-support" / "dev.csv", newline="", encoding="utf-8") as f:
            return [r["instruction"] for r in csv.DictReader(f)]
    raise SystemExit(f"--prompts: unknown workload {kind!r} (questions, alpaca, support)")


WORKLOADS = {
    "questions": f"{len(QUESTIONS)} short questions in turn ({'; '.join(QUESTIONS[:2])}; ...)",
    "alpaca": "the 300 Alpaca dev instructions (instruction + input as the user message) in file order, "
    "../shared/data/alpaca/dev.json",
    "support": "the 300 customer-support dev questions in file order, ../shared/data/customer-support/dev.csv",
}


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.ttft, self.e2e, self.tokens, self.codes, self.malformed = [], [], 0, {}, []
        self.replies, self.prompts, self.finishes = [], [], {}

    def add(self, code: int, e2e: float = 0.0, ttft: float | None = None, usage=None, problem: str | None = None):
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1
            if code == 200 and problem is None:
                self.e2e.append(e2e)
                if ttft is not None:
                    self.ttft.append(ttft)
                tokens, prompt, finish = usage
                self.tokens += tokens
                self.replies.append(tokens)
                self.prompts.append(prompt)
                self.finishes[finish] = self.finishes.get(finish, 0) + 1
            if problem:
                self.malformed.append(problem)


def one_request(http: httpx.Client, url: str, i: int, args, tally: Tally) -> None:
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.questions[i % len(args.questions)]})
    body = {
        "model": "smollm2-135m",
        "messages": messages,
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start, first, lines = time.perf_counter(), None, []
    try:
        with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
            code, retry_after = r.status_code, r.headers.get("retry-after")
            for line in r.iter_lines():
                if (
                    first is None
                    and line.startswith("data: {")
                    and '"content": "' in line
                    and '"content": ""' not in line
                ):
                    first = time.perf_counter() - start
                lines.append(line)
    except httpx.HTTPError as exc:
        tally.add(-1, problem=f"transport error {type(exc).__name__}: {exc}")
        return
    e2e = time.perf_counter() - start
    raw = "\n".join(lines)
    if code == 429:
        tally.add(429, problem=None if retry_after else "429 without Retry-After")
    elif code != 200:
        tally.add(code, problem=f"status {code}: {raw[:200]}")
    else:
        usage, problem = check_stream([line for line in lines if line])
        tally.add(200, e2e, first, usage, problem)


def check_stream(events: list[str]) -> tuple[tuple[int, int, str] | None, str | None]:
    """((completion tokens, prompt tokens, finish reason), None) for a well-formed stream, else (None, problem)."""
    if not events or events[-1] != "data: [DONE]" or not all(e.startswith("data: ") for e in events):
        return None, f"bad SSE framing: {events[-3:]}"
    try:
        chunks = [json.loads(e[6:]) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
        used, prompt = chunks[-1]["usage"]["completion_tokens"], chunks[-1]["usage"]["prompt_tokens"]
        assert isinstance(used, int) and used > 0 and isinstance(prompt, int) and prompt > 0
        return (used, prompt, finishes[-1]), None
    except Exception as exc:  # noqa: BLE001 - any deviation is a malformed response
        return None, f"malformed stream ({exc!r})"


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) used so far by process ``pid``, or by the whole machine (all processes) when None."""
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (sum(int(x) for x in cpu) - int(cpu[3]) - int(cpu[4])) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def phase(url: str, clients: int, seconds: float, args, server_pid: int | None = None) -> dict:
    tally, deadline = Tally(), time.monotonic() + seconds

    def client(k: int):
        with httpx.Client(timeout=300) as http:
            i = k
            while time.monotonic() < deadline:
                one_request(http, url, i, args, tally)
                i += clients

    start, cpu_all, cpu_server, cpu_me = time.perf_counter(), cpu_seconds(), 0.0, time.process_time()
    if server_pid is not None:
        cpu_server = cpu_seconds(server_pid)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    # who had the 2 cores: the server, this client process, everything else (other users of the machine)
    server = cpu_seconds(server_pid) - cpu_server if server_pid is not None else float("nan")
    me = time.process_time() - cpu_me
    other = cpu_seconds() - cpu_all - server - me
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "cpu": (server / elapsed, me / elapsed, other / elapsed),
        "ok": len(tally.e2e),
        "codes": tally.codes,
        "tokens": tally.tokens,
        "tokens_per_s": tally.tokens / elapsed,
        "ttft": (pct(tally.ttft, 0.5), pct(tally.ttft, 0.95)),
        "e2e": (pct(tally.e2e, 0.5), pct(tally.e2e, 0.95)),
        "malformed": tally.malformed,
        "replies": tally.replies,
        "prompts": tally.prompts,
        "finishes": tally.finishes,
    }


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_args(args, mode: str, port: int) -> list[str]:
    batching, _, extra = mode.partition("+")  # continuous+prefix: with the prefix cache
    return [
        "serve",
        "smollm2-135m",
        "--port",
        str(port),
        "--batching",
        batching,
        *(["--prefix-cache", "true"] if extra == "prefix" else []),
        "--max-batch-size",
        str(max(args.clients)),
        "--max-wait-ms",
        "20",
        "--queue-size",
        str(args.queue_size),
        "--max-tokens",
        str(args.max_tokens),
        "--threads",
        str(args.threads),
    ]


def start_server(cmd: list[str], port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli", *cmd], env=env, stderr=subprocess.PIPE, text=True)
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


def run_mode(args, mode: str) -> tuple[list[dict], str]:
    port = free_port()
    cmd = server_args(args, mode, port)
    proc = start_server(cmd, port)
    url = f"http://127.0.0.1:{port}"
    try:
        phase(url, 1, 5, args)  # warm-up, not reported
        rows = [phase(url, c, d, args, proc.pid) for c, d in zip(args.clients, args.durations)]
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows, "tunelab " + " ".join(cmd).replace(str(port), "PORT")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1,8,32", help="concurrent clients of each phase")
    ap.add_argument("--durations", default="15,25,45", help="seconds of each phase")
    ap.add_argument("--modes", default="static,continuous", help="static, continuous, continuous+prefix (prefix cache)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--prompts", default="questions", help="questions, alpaca or support (see above)")
    ap.add_argument("--system", default="", help="a system message before every question (a shared prefix)")
    ap.add_argument("--queue-size", type=int, default=64, help=">= clients, so a correct server never answers 429")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    ap.add_argument("--out", help="default bench/results/<cpu-kind>/serve_load[-PROMPTS-MAXTOKENS[-system]].md")
    args = ap.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    args.durations = [float(d) for d in args.durations.split(",")]
    args.questions = load_prompts(args.prompts)
    sys.path.insert(0, str(ROOT))
    from bench import common

    load_before, rep = common.load_average(), common.machine(args.threads, seconds=0.5)
    results = {mode: run_mode(args, mode) for mode in args.modes.split(",")}
    text = report(args, results, rep, load_before, common.load_average(), " ".join(sys.argv))
    default = args.prompts == "questions" and args.max_tokens == 32 and not args.system
    name = (
        "serve_load.md"
        if default
        else f"serve_load-{args.prompts}-{args.max_tokens}{'-system' if args.system else ''}.md"
    )
    out = Path(args.out) if args.out else common.results_dir() / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    bad = sum(
        sum(n for c, n in r["codes"].items() if c >= 500 or c < 0 or c == 429) + len(r["malformed"])
        for rows, _ in results.values()
        for r in rows
    )
    return 1 if bad else 0


def report(args, results: dict, rep: dict, load_before: str, load_after: str, argv: str) -> str:
    from bench import common

    lines = [
        "# `tunelab serve` load test: static vs continuous batching",
        "",
        *common.header(
            rep, load_before, load_after, f"python bench/{Path(argv.split()[0]).name} {' '.join(argv.split()[1:])}"
        ),
        f"Clients: streaming chat completions (greedy, max_tokens {args.max_tokens}, include_usage) on 127.0.0.1; each "
        "client sends its next request as soon as the previous one ends. "
        f"Prompts: {WORKLOADS[args.prompts]}"
        + (
            f"; system message before each: {args.system!r}"
            if args.system
            else "; no system message (SmolLM2's template adds its default one)"
        )
        + ". TTFT = time to the first chunk with text. "
        "Tokens/s = completion tokens of all finished requests / phase time (including the drain of requests still "
        "running at the end of the phase). Cores used = CPU seconds / phase seconds of the server process, of this "
        "client process and of every other process on the machine (/proc; the machine has 2 cores).",
        "",
    ]
    for mode, (_, cmd) in results.items():
        lines.append(f"- {mode}: `{cmd}`")
    lines += [
        "",
        "| batching | clients | seconds | ok requests | tokens | tokens/s | TTFT p50 (s) | TTFT p95 (s) | "
        "end-to-end p50 (s) | end-to-end p95 (s) | status codes | malformed | prompt tokens min/mean/max | "
        "reply tokens mean/max | finish reasons | cores used: server / clients / other processes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, (rows, _) in results.items():
        for r in rows:
            p, q = r["prompts"] or [0], r["replies"] or [0]
            lines.append(
                f"| {mode} | {r['clients']} | {r['seconds']} | {r['ok']} | {r['tokens']} | {r['tokens_per_s']:.1f} | "
                f"{r['ttft'][0]:.2f} | {r['ttft'][1]:.2f} | {r['e2e'][0]:.2f} | {r['e2e'][1]:.2f} | "
                f"{r['codes']} | {len(r['malformed'])} | {min(p)}/{sum(p) / len(p):.1f}/{max(p)} | "
                f"{sum(q) / len(q):.1f}/{max(q)} | {r['finishes']} | {r['cpu'][0]:.2f} / {r['cpu'][1]:.2f} / "
                f"{r['cpu'][2]:.2f} |"
            )
    if "static" in results:
        lines.append("")
        for mode in [m for m in results if m != "static"]:
            for s, c in zip(results["static"][0], results[mode][0]):
                ratio = c["tokens_per_s"] / max(s["tokens_per_s"], 1e-9)
                lines.append(f"- {c['clients']} clients: {mode} / static tokens/s = {ratio:.2f}x")
    problems = [m for rows, _ in results.values() for r in rows for m in r["malformed"]]
    if problems:
        lines += ["", "Malformed responses:", "", *[f"- {m}" for m in problems[:20]]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
