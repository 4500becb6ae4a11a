"""`tunelab monitor`: a streaming alert rule over prediction JSONL (what `tunelab predict` writes).

The rule watches one label in a sliding window of the last N predictions and fires when that label's share
reaches a threshold (``--min-prob`` counts only predictions at least that confident). An alert is written once
when the share crosses the threshold and a ``resolved`` event once it falls back below it, so a long negative
stretch is one alert, not one per line. Events are JSONL on stdout (and appended to ``--alerts``); ``--metrics``
keeps a Prometheus text file (node_exporter's textfile-collector format) current after every prediction.
Input is read line by line, so ``tunelab predict RUN < feed.jsonl | tunelab monitor ...`` follows a live feed.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, TextIO

from tunelab.errors import DataError, TunelabError


@dataclass(frozen=True)
class Rule:
    """Alert when ``label``'s share among the last ``window`` predictions is >= ``threshold``.

    Attributes:
        label: the watched label (e.g. ``negative``).
        window: predictions in the sliding window.
        threshold: share of the window (0-1] that fires the alert.
        min_prob: a prediction counts only when its probability of ``label`` is at least this (0: any).
        min_count: predictions needed before the rule may fire (default: a full window).
    """

    label: str
    window: int = 50
    threshold: float = 0.5
    min_prob: float = 0.0
    min_count: int | None = None

    def check(self) -> None:
        if self.window < 1:
            raise TunelabError(f"--window: expected a positive number of predictions, got {self.window}")
        if not 0 < self.threshold <= 1:
            raise TunelabError(f"--threshold: expected a share in (0, 1], got {self.threshold}")
        if not 0 <= self.min_prob <= 1:
            raise TunelabError(f"--min-prob: expected a probability in [0, 1], got {self.min_prob}")
        if self.min_count is not None and not 1 <= self.min_count <= self.window:
            raise TunelabError(f"--min-count: expected 1..--window ({self.window}), got {self.min_count}")


@dataclass
class Monitor:
    """The rule's state over a stream; ``feed`` one prediction at a time and get the events it causes."""

    rule: Rule
    recent: deque = field(default_factory=deque)  # (hit, text, line) of the last `window` predictions
    counts: Counter = field(default_factory=Counter)  # predicted labels over the whole stream
    seen: int = 0
    alerting: bool = False
    alerts: int = 0

    @property
    def share(self) -> float:
        return sum(hit for hit, _, _ in self.recent) / max(len(self.recent), 1)

    def feed(self, pred: dict, line: int) -> list[dict]:
        """Add one prediction (``label`` and optional ``probs``, ``text``); return the alert/resolved events."""
        hit = pred["label"] == self.rule.label and _prob(pred, self.rule.label) >= self.rule.min_prob
        self.recent.append((hit, pred.get("text", ""), line))
        if len(self.recent) > self.rule.window:
            self.recent.popleft()
        self.counts[pred["label"]] += 1
        self.seen += 1
        need = self.rule.min_count or self.rule.window
        firing = len(self.recent) >= need and self.share >= self.rule.threshold
        if firing == self.alerting:
            return []
        self.alerting = firing
        self.alerts += firing
        event = {
            "event": "alert" if firing else "resolved",
            "line": line,
            "label": self.rule.label,
            "share": round(self.share, 4),
            "threshold": self.rule.threshold,
            "window": len(self.recent),
        }
        if firing:  # what the reader of the alert wants to see first: the matching texts in the window
            event["examples"] = [{"line": n, "text": t} for h, t, n in self.recent if h][-5:]
        return [event]

    def prometheus(self) -> str:
        """The monitor's state as Prometheus text exposition (format 0.0.4)."""
        esc = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # noqa: E731
        lab = f'label="{esc(self.rule.label)}"'
        lines = [
            "# HELP tunelab_monitor_predictions_total Predictions read, by predicted label.",
            "# TYPE tunelab_monitor_predictions_total counter",
            *(f'tunelab_monitor_predictions_total{{label="{esc(k)}"}} {v}' for k, v in sorted(self.counts.items())),
            "# HELP tunelab_monitor_window_share Share of the watched label in the sliding window.",
            "# TYPE tunelab_monitor_window_share gauge",
            f"tunelab_monitor_window_share{{{lab}}} {self.share:.6g}",
            "# HELP tunelab_monitor_alerting 1 while the alert rule fires.",
            "# TYPE tunelab_monitor_alerting gauge",
            f"tunelab_monitor_alerting{{{lab}}} {int(self.alerting)}",
            "# HELP tunelab_monitor_alerts_total Alerts fired.",
            "# TYPE tunelab_monitor_alerts_total counter",
            f"tunelab_monitor_alerts_total{{{lab}}} {self.alerts}",
        ]
        return "\n".join(lines) + "\n"


def _prob(pred: dict, label: str) -> float:
    probs = pred.get("probs")
    return 1.0 if probs is None else float(probs.get(label, 0.0))


def parse(raw: str, source: str, line: int) -> dict | None:
    """One prediction line as a dict with a string ``label`` (None for a blank line); DataError naming source:line."""
    if not raw.strip():
        return None
    try:
        pred = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}:{line}: not JSON ({exc.msg}); expected one `tunelab predict` line") from None
    if not isinstance(pred, dict) or not isinstance(pred.get("label"), str):
        got = sorted(pred) if isinstance(pred, dict) else type(pred).__name__
        raise DataError(
            f"{source}:{line}: expected a prediction with a string 'label' (a classification run's "
            f"`tunelab predict` output), got {got}"
        )
    probs = pred.get("probs")
    if probs is not None and not (isinstance(probs, dict) and all(isinstance(v, (int, float)) for v in probs.values())):
        raise DataError(f"{source}:{line}: 'probs' must map labels to numbers")
    return pred


def _check_label(pred: dict, rule: Rule, source: str, line: int) -> None:
    """The watched label must be one the run predicts (known from the first line's probs)."""
    probs = pred.get("probs")
    if probs is None or rule.label in probs:
        return
    close = difflib.get_close_matches(rule.label, list(probs), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise TunelabError(
        f"--label {rule.label!r}: not a label of these predictions{hint}; {source}:{line} has labels: "
        + ", ".join(probs)
    )


def watch(lines: Iterable[str], rule: Rule, source: str, emit, metrics: Path | None = None) -> Monitor:
    """Run ``rule`` over prediction lines; ``emit(event)`` for each alert/resolved event. Returns the final state."""
    rule.check()
    mon = Monitor(rule)
    for n, raw in enumerate(lines, start=1):
        pred = parse(raw, source, n)
        if pred is None:
            continue
        if mon.seen == 0:
            _check_label(pred, rule, source, n)
        for event in mon.feed(pred, n):
            emit(event)
        if metrics is not None:
            _write_atomic(metrics, mon.prometheus())
    return mon


def _write_atomic(path: Path, text: str) -> None:
    """Scrapers must never read half a file: write beside it, then rename over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _alerts_file(path: str | None, append: bool) -> TextIO | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise TunelabError(f"--alerts {path}: is a folder; give a file name")
    if p.exists() and not append:
        raise TunelabError(f"--alerts {path}: exists; pass --append to add to it, or choose a new file")
    if not p.parent.is_dir():
        raise TunelabError(f"--alerts {path}: folder {p.parent} does not exist")
    return p.open("a", encoding="utf-8")


def run(args) -> int:
    """The `tunelab monitor` command: events on stdout (and --alerts), a summary on stderr."""
    rule = Rule(args.label, args.window, args.threshold, args.min_prob, args.min_count)
    rule.check()
    metrics = Path(args.metrics) if args.metrics else None
    if metrics is not None and not metrics.parent.is_dir():
        raise TunelabError(f"--metrics {args.metrics}: folder {metrics.parent} does not exist")
    source = args.input or "<stdin>"
    if args.input and not Path(args.input).is_file():
        raise DataError(f"{args.input}: file not found")
    out = _alerts_file(args.alerts, args.append)

    def emit(event: dict) -> None:
        line = json.dumps(event, ensure_ascii=False)
        print(line, flush=True)
        if out is not None:
            out.write(line + "\n")
            out.flush()

    try:
        if args.input:
            with open(args.input, encoding="utf-8") as f:
                mon = watch(f, rule, source, emit, metrics)
        else:
            mon = watch(sys.stdin, rule, source, emit, metrics)
    finally:
        if out is not None:
            out.close()
    print(
        f"monitor: {mon.seen} predictions, {mon.alerts} alert(s); '{rule.label}' share in the last "
        f"{len(mon.recent)}: {mon.share:.3f} (threshold {rule.threshold}); labels: "
        + ", ".join(f"{k}={v}" for k, v in mon.counts.most_common()),
        file=sys.stderr,
    )
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "monitor", help="sliding-window alert rule over `tunelab predict` JSONL (stdin or --input); alerts as JSONL"
    )
    p.add_argument("--input", help="prediction JSONL file (default: stdin, read line by line)")
    p.add_argument("--label", required=True, help="the watched label, e.g. negative")
    p.add_argument("--window", type=int, default=50, help="predictions in the sliding window [default: 50]")
    p.add_argument("--threshold", type=float, default=0.5, help="share of the window that fires [default: 0.5]")
    p.add_argument("--min-prob", type=float, default=0.0, help="count a prediction only this confident [default: 0]")
    p.add_argument("--min-count", type=int, default=None, help="predictions before the rule may fire [default: window]")
    p.add_argument("--alerts", help="also write events to this JSONL file (must be new unless --append)")
    p.add_argument("--append", action="store_true", help="append to an existing --alerts file")
    p.add_argument("--metrics", help="keep a Prometheus textfile (.prom) with the monitor's counters and gauges")
