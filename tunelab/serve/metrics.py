"""Prometheus text exposition (format 0.0.4), written by hand: counters, gauges, histograms.

Small enough not to need prometheus_client; every update takes one lock, so the worker thread and
the event loop can both record. With several worker processes (`serve --workers N`) each process
writes a snapshot of its metrics to a shared folder every second (``share``) and ``render`` adds up
every worker's numbers, so any worker's /metrics shows the whole server (as prometheus_client's
multiprocess mode does).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _labels(pairs: tuple) -> str:
    if not pairs:
        return ""
    esc = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # noqa: E731
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs) + "}"


class _Histogram:
    def __init__(self, buckets: tuple):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
        self.sum += value
        self.count += 1


class Metrics:
    """The server's metrics; ``render()`` is the /metrics body."""

    def __init__(self, queue_depth=lambda: 0, running=lambda: 0):
        self._lock = threading.Lock()
        self._gauges = {"tunelab_queue_depth": queue_depth, "tunelab_running_sequences": running}
        self._share: Path | None = None
        self.counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self.histograms: dict[str, dict[tuple, _Histogram]] = defaultdict(dict)

    def inc(self, name: str, value: float = 1.0, **labels) -> None:
        with self._lock:
            self.counters[name][tuple(sorted(labels.items()))] += value

    def observe(self, name: str, value: float, buckets: tuple = LATENCY_BUCKETS, **labels) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self.histograms[name].setdefault(key, _Histogram(buckets)).observe(value)

    def value(self, name: str, **labels) -> float:
        with self._lock:
            return self.counters[name].get(tuple(sorted(labels.items())), 0.0)

    def snapshot(self) -> dict:
        """This process's numbers as JSON-ready data (label tuples as lists)."""
        with self._lock:
            return {
                "counters": {n: [[list(k), v] for k, v in c.items()] for n, c in self.counters.items()},
                "histograms": {
                    n: [[list(k), list(h.buckets), h.counts, h.sum, h.count] for k, h in hs.items()]
                    for n, hs in self.histograms.items()
                },
                "gauges": {n: f() for n, f in self._gauges.items()},
            }

    def share(self, folder: Path, every: float = 1.0) -> None:
        """Write this process's snapshot to ``folder``/PID.json every ``every`` s; ``render`` then adds up all."""
        self._share = Path(folder)
        mine = self._share / f"{os.getpid()}.json"

        def loop():
            while True:
                tmp = mine.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.snapshot()), encoding="utf-8")
                tmp.replace(mine)  # atomic: readers never see half a file
                time.sleep(every)

        threading.Thread(target=loop, name="tunelab-metrics-share", daemon=True).start()

    def _merged(self) -> tuple[dict, dict, dict]:
        """(counters, histograms, gauges) of this process plus the other workers' latest snapshots."""
        snaps = [self.snapshot()]
        if self._share is not None:
            for f in sorted(self._share.glob("*.json")):
                if f.stem != str(os.getpid()):
                    try:
                        snaps.append(json.loads(f.read_text(encoding="utf-8")))
                    except (OSError, ValueError):  # a worker that is just writing or gone
                        continue
        counters: dict = defaultdict(lambda: defaultdict(float))
        histograms: dict = defaultdict(dict)
        gauges: dict = defaultdict(float)
        for snap in snaps:
            for name, rows in snap["counters"].items():
                for k, v in rows:
                    counters[name][tuple(map(tuple, k))] += v
            for name, rows in snap["histograms"].items():
                for k, buckets, counts, total, count in rows:
                    h = histograms[name].setdefault(tuple(map(tuple, k)), _Histogram(tuple(buckets)))
                    h.counts = [a + b for a, b in zip(h.counts, counts)]
                    h.sum, h.count = h.sum + total, h.count + count
            for name, v in snap["gauges"].items():
                gauges[name] += v
        gauges["tunelab_workers"] = len(snaps)
        return counters, histograms, gauges

    def render(self) -> str:
        counters, histograms, gauges = self._merged()
        lines = []
        for name, help_text in HELP.items():
            kind = "counter" if name.endswith("_total") else "gauge" if name in gauges else "histogram"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            if kind == "gauge":
                lines.append(f"{name} {gauges[name]:g}")
            elif kind == "counter":
                lines += [f"{name}{_labels(k)} {v:g}" for k, v in sorted(counters[name].items())]
            else:
                for k, h in sorted(histograms[name].items()):
                    lines += [
                        f"{name}_bucket{_labels(k + (('le', f'{b:g}'),))} {c}" for b, c in zip(h.buckets, h.counts)
                    ]
                    lines += [
                        f"{name}_bucket{_labels(k + (('le', '+Inf'),))} {h.count}",
                        f"{name}_sum{_labels(k)} {h.sum:g}",
                        f"{name}_count{_labels(k)} {h.count}",
                    ]
        return "\n".join(lines) + "\n"


HELP = {
    "tunelab_requests_total": "HTTP requests by route and status code.",
    "tunelab_request_latency_seconds": "Time from request arrival to the last byte of the response, by route.",
    "tunelab_prompt_tokens_total": "Prompt tokens of generation requests, by model.",
    "tunelab_generated_tokens_total": "Tokens generated, by model.",
    "tunelab_prefix_cache_tokens_total": "Prompt tokens whose keys/values came from the prefix cache, by model.",
    "tunelab_predictions_total": "Class predictions of /v1/predict, by model and predicted label.",
    "tunelab_cancelled_total": "Generation requests stopped early (client disconnect or timeout), by reason.",
    "tunelab_workers": "Server processes whose numbers this page adds up (serve --workers).",
    "tunelab_queue_depth": "Requests waiting for the worker.",
    "tunelab_running_sequences": "Sequences in the running batches (continuous batching).",
    "tunelab_batch_size": "Sequences per decode step (continuous) or per generate call (static).",
    "tunelab_batch_seconds": "Time of one decode step, generate call or pooled predict/embeddings call.",
    "tunelab_prefill_rows": "Sequences prefilled together when requests join the running batch.",
    "tunelab_pooled_requests": "Requests answered by one pooled /v1/predict or /v1/embeddings call.",
    "tunelab_time_to_first_token_seconds": "Time from request arrival to its first generated token, by model.",
    "tunelab_inter_token_latency_seconds": "Time between consecutive tokens of one sequence, by model.",
}
