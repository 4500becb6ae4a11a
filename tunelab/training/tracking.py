"""Where training metrics go: the loop sends every record to one ``Tracker``.

The default writes ``metrics.jsonl`` in the run folder (one JSON object per line: training windows with
``step``, ``epoch``, ``loss``, ``lr``, ``tokens_per_s``; evaluations with ``step`` and ``dev/<metric>``).
Other back-ends (TensorBoard, MLflow, a dashboard) subclass ``Tracker``; a recipe that wants several
passes a ``Trackers`` of them. Only the main process gets a real tracker.
"""

from __future__ import annotations

import json
from pathlib import Path


class Tracker:
    """Receives the run's records; every method is a no-op until overridden."""

    def start(self, run_dir: Path, resumed_step: int) -> None:
        """Training starts (or resumes at ``resumed_step``: records past it came from a killed run).

        A tracker that needs the run's config gets it from the recipe that constructs it."""

    def log(self, record: dict) -> None:
        """One record: always has ``step``; training windows have ``loss``, evaluations ``dev/...`` keys."""

    def finish(self, status: str) -> None:
        """Training ended: ``finished``, ``stopped_early``, ``interrupted`` or ``failed``."""


class Trackers(Tracker):
    """Several trackers as one."""

    def __init__(self, *trackers: Tracker):
        self.trackers = trackers

    def start(self, run_dir: Path, resumed_step: int) -> None:
        for t in self.trackers:
            t.start(run_dir, resumed_step)

    def log(self, record: dict) -> None:
        for t in self.trackers:
            t.log(record)

    def finish(self, status: str) -> None:
        for t in self.trackers:
            t.finish(status)


class JsonlTracker(Tracker):
    """``run_dir/metrics.jsonl``; on resume, lines past the resumed step are dropped (each step once)."""

    FILE = "metrics.jsonl"

    def __init__(self):
        self.path: Path | None = None

    def start(self, run_dir: Path, resumed_step: int) -> None:
        self.path = Path(run_dir) / self.FILE
        if self.path.is_file():
            text = self.path.read_text(encoding="utf-8")
            kept = [ln for ln in text.splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= resumed_step]
            self.path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")

    def log(self, record: dict) -> None:
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
