"""Prometheus text exposition (format 0.0.4), written by hand: counters, one gauge, histograms.

Small enough not to need prometheus_client; every update takes one lock, so the worker thread and
the event loop can both record.
"""

from __future__ import annotations

import threading
from collections import defaultdict

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

    def __init__(self, queue_depth=lambda: 0):
        self._lock = threading.Lock()
        self._queue_depth = queue_depth
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

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, help_text in HELP.items():
                kind = "counter" if name.endswith("_total") else "histogram"
                if name == "tunelab_queue_depth":
                    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {self._queue_depth()}"]
                    continue
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                if kind == "counter":
                    lines += [f"{name}{_labels(k)} {v:g}" for k, v in sorted(self.counters[name].items())]
                else:
                    for k, h in sorted(self.histograms[name].items()):
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
    "tunelab_predictions_total": "Class predictions of /v1/predict, by model and predicted label.",
    "tunelab_cancelled_total": "Generation requests stopped early (client disconnect or timeout), by reason.",
    "tunelab_queue_depth": "Requests waiting for the worker.",
    "tunelab_batch_size": "Sequences per generate call.",
    "tunelab_batch_seconds": "Time of one generate call.",
}
