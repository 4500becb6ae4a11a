"""Where a continuous-batching decode step spends its time, without HTTP: the scheduler of `tunelab serve` driven
in-process by closed-loop "clients" (a finished request is replaced by the next prompt at once).

Loads smollm2-135m, keeps ``--clients`` requests running (chat prompts from Alpaca dev instructions, greedy,
``--max-tokens``, streaming with a no-op sink), runs for ``--seconds`` after a warm-up, and prints: generated
tokens/s of the loop, the wall time split into model forwards (decode and prefill) vs the rest of each step
(sampling, stop checks, streaming text, cache bookkeeping as rows join and leave), from cProfile's cumulative
times, plus the top torch operators of a few decode steps (torch.profiler).

    .venv/bin/python bench/serve_profile.py [--clients 32] [--max-tokens 128] [--seconds 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prompts(limit: int = 300) -> list[dict]:
    from bench.common import DATA

    rows = json.loads((DATA / "alpaca" / "dev.json").read_text())[:limit]
    return [{"role": "user", "content": (r["instruction"] + "\n\n" + r["input"]).strip()} for r in rows]


class Loop:
    """``clients`` closed-loop requests on one scheduler."""

    def __init__(self, served, clients: int, max_tokens: int, metrics):
        from tunelab.generation.decode import encode_prompt
        from tunelab.serve.continuous import Scheduler

        self.served, self.clients, self.max_tokens = served, clients, max_tokens
        self.sched = Scheduler(metrics, log=lambda m: None)
        with served.lock:
            self.ids = [
                encode_prompt(served.tokenizer, [m], 10**9, served.template, log=lambda m: None)[0] for m in prompts()
            ]
        self.next, self.tokens, self.finished, self.pending = 0, 0, 0, []

    def job(self):
        from tunelab.serve.batching import Job
        from tunelab.serve.sampling import Sampling

        ids = self.ids[self.next % len(self.ids)]
        self.next += 1

        def emit(kind, payload):
            if kind == "done":
                self.tokens += sum(len(c.tokens) for c in payload)
                self.finished += 1
                self.pending.append(self.job())

        cfg = self.served.gen.model_copy(update={"do_sample": False, "num_beams": 1, "stop": []})
        return Job(self.served, emit, cfg, ids, self.max_tokens, [], 1, True, sampling=Sampling(), window=8192)

    def run(self, seconds: float) -> tuple[int, int, int, float]:
        if not self.sched.rows() and not self.pending:
            self.pending = [self.job() for _ in range(self.clients)]
        tokens0, finished0, steps, start = self.tokens, self.finished, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            if self.pending:
                join, self.pending = self.pending, []
                self.sched.admit(join)
            self.sched.step()
            steps += 1
        return self.tokens - tokens0, self.finished - finished0, steps, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--warmup", type=float, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-steps", type=int, default=5, help="decode steps under torch.profiler (0: none)")
    args = ap.parse_args()

    import torch

    from tunelab.serve import registry
    from tunelab.serve.metrics import Metrics

    torch.set_num_threads(args.threads)
    served = registry.load_all(["smollm2-135m"], log=lambda m: None)["smollm2-135m"]
    loop = Loop(served, args.clients, args.max_tokens, Metrics())
    loop.run(args.warmup)
    from bench.serve_load import cpu_seconds

    prof = cProfile.Profile()
    machine0, mine0 = cpu_seconds(), time.process_time()
    prof.enable()
    tokens, finished, steps, elapsed = loop.run(args.seconds)
    prof.disable()
    mine = time.process_time() - mine0
    print(
        f"clients {args.clients}, max_tokens {args.max_tokens}, threads {args.threads}: {tokens} tokens, "
        f"{finished} requests, {steps} steps in {elapsed:.1f} s = {1000 * elapsed / steps:.1f} ms/step (tokens/s "
        f"counts finished requests only: {tokens / elapsed:.1f}); cores used by this process {mine / elapsed:.2f}, "
        f"by other processes {(cpu_seconds() - machine0 - mine) / elapsed:.2f}"
    )
    stats = pstats.Stats(prof)
    cum = {f"{Path(k[0]).name}:{k[2]}": v[3] for k, v in stats.stats.items()}
    pick = [
        "continuous.py:step",
        "continuous.py:admit",
        "continuous.py:_prefill",
        "continuous.py:_advance",
        "continuous.py:_choose",
        "continuous.py:_check",
        "continuous.py:_send",
        "continuous.py:_finish",
        "continuous.py:keep",
        "continuous.py:merge",
        "module.py:_call_impl",
    ]
    for name in pick + sorted(k for k in cum if k.startswith(("continuous.py", "slots.py")) and k not in pick):
        if name in cum:
            print(f"  {name:40s} {cum[name]:7.2f} s  {100 * cum[name] / elapsed:5.1f} %")
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats("tottime").print_stats(15)
    print(out.getvalue()[-4000:])
    if args.torch_steps:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as tp:
            for _ in range(args.torch_steps):
                if loop.pending:
                    join, loop.pending = loop.pending, []
                    loop.sched.admit(join)
                loop.sched.step()
        print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    return 0


if __name__ == "__main__":
    sys.exit(main())
