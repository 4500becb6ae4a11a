"""What a run folder says about its state: running, finished, failed or interrupted.

The training recipe holds an exclusive ``flock`` on ``run.lock`` while it trains (``active``; the kernel drops
it when the process dies, however it dies, so a held lock means a live trainer), writes ``status.json`` when it
starts and when it ends (finished, failed with the error, or interrupted), and appends its log lines to
``train.log``. The loop reports into status.json through ``RunStatus``, an ordinary ``Tracker``: the step
reached and its outcome, so a run the loop stopped on SIGINT/SIGTERM (``Interrupted``) reads as interrupted. Readers (``tunelab ui``) derive the state from these files alone:

    metrics.json present           -> finished
    run.lock held                  -> running
    status.json says failed        -> failed (with the error)
    anything else                  -> interrupted (stopped, killed, or crashed before recording an outcome)

Light on purpose (no torch): the dashboard scans many folders with it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from tunelab.errors import TunelabError
from tunelab.training.tracking import Tracker

LOCK = "run.lock"
STATUS = "status.json"
LOG = "train.log"
STATES = ("running", "finished", "failed", "interrupted")

try:  # POSIX only; elsewhere a run is "running" while status.json says so and its pid is alive
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_status(run_dir: Path) -> dict:
    """status.json as a dict ({} when absent or unreadable: a half-written file is never trusted)."""
    try:
        data = json.loads((Path(run_dir) / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _acquire(fd: int, attempts: int = 20) -> bool:
    """Exclusive lock, retried briefly: a dashboard's shared probe may hold it for a moment."""
    for _ in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.05)
    return False


class RunStatus(Tracker):
    """The loop's side of status.json: the step training reached and the loop's outcome.

    The recipe passes it to the loop with its other trackers; ``active`` reads ``outcome`` to tell an
    interrupted run (the loop heard SIGINT/SIGTERM, saved and raised) from a failed one.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.outcome: str | None = None

    def start(self, run_dir: Path, resumed_step: int) -> None:
        note(self.run_dir, step=resumed_step, **({"resumed_from": resumed_step} if resumed_step else {}))

    def log(self, record: dict) -> None:
        if "loss" in record:  # training windows, every train.log_every steps: cheap enough for an atomic rewrite
            note(self.run_dir, step=record["step"])

    def finish(self, status: str) -> None:
        self.outcome = status
        note(self.run_dir, loop=status)


class Session:
    """What ``active`` yields: ``log`` (prints and appends to train.log), ``tracker`` (a RunStatus for the loop)
    and ``note`` (facts for status.json). A session of a non-main process writes nothing."""

    def __init__(self, run_dir: Path, log: Callable[[str], None], tracker: Tracker, writes: bool):
        self.run_dir, self.log, self.tracker, self.writes = Path(run_dir), log, tracker, writes

    def note(self, **facts) -> None:
        if self.writes:
            note(self.run_dir, **facts)


@contextmanager
def active(run_dir: Path, log: Callable[[str], None], main: bool = True) -> Iterator[Session]:
    """Mark ``run_dir`` as being trained by this process for the duration of the block.

    Yields a Session whose log also appends each line to train.log. Records the outcome in status.json:
    finished on a normal exit, interrupted when the loop reported an interrupt (or on KeyboardInterrupt),
    failed with the message otherwise. Refuses (TunelabError) when another live process is training in the
    same folder. ``main=False`` (the other processes of a multi-process run) records nothing.
    """
    if not main:
        yield Session(run_dir, log, Tracker(), writes=False)
        return
    run_dir = Path(run_dir)
    lock = open(run_dir / LOCK, "a+", encoding="utf-8")
    try:
        if fcntl is not None and not _acquire(lock.fileno()):
            other = read_status(run_dir).get("pid", "?")
            raise TunelabError(
                f"{run_dir}: another process (pid {other}) is training in this folder; wait for it or stop it"
            )
        info = {"pid": os.getpid(), "host": socket.gethostname(), "cwd": os.getcwd(), "argv": sys.argv}
        info["started"] = time.time()
        lock.seek(0)
        lock.truncate()
        lock.write(json.dumps(info))
        lock.flush()
        _write_json(run_dir / STATUS, {"state": "running", **info})
        with open(run_dir / LOG, "a", encoding="utf-8") as logfile:
            session = Session(run_dir, _tee(log, logfile), RunStatus(run_dir), writes=True)
            try:
                yield session
            except BaseException as exc:
                _record_failure(run_dir, session, exc)
                raise
            note(run_dir, state="finished", ended=time.time())
    finally:
        lock.close()  # closing the descriptor releases the flock


def _tee(log: Callable[[str], None], logfile) -> Callable[[str], None]:
    def tee(msg: str) -> None:
        log(msg)
        logfile.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        logfile.flush()

    return tee


def _record_failure(run_dir: Path, session: Session, exc: BaseException) -> None:
    """status.json after an exception: interrupted if the loop said so (or Ctrl-C outside it), else failed."""
    if session.tracker.outcome == "interrupted" or isinstance(exc, KeyboardInterrupt):
        resumes = "resumable: train again with the same config" if resumable(run_dir) else "no checkpoint to resume"
        note(run_dir, state="interrupted", ended=time.time(), error=f"{str(exc) or 'interrupted (Ctrl-C)'}; {resumes}")
        return
    msg = str(exc) if isinstance(exc, TunelabError) else f"{type(exc).__name__}: {exc}"
    # into train.log only: the command itself prints the one error line on the console
    with open(run_dir / LOG, "a", encoding="utf-8") as logfile:
        logfile.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} error: {msg}\n")
    note(run_dir, state="failed", ended=time.time(), error=msg)


def note(run_dir: Path, **facts) -> None:
    """Add facts (e.g. trainable_parameters) to status.json while the run trains, for dashboards to show."""
    _write_json(Path(run_dir) / STATUS, {**read_status(run_dir), **facts})


def lock_held(run_dir: Path) -> bool:
    """True while a live process holds run.lock (probed with a shared, non-blocking lock, released at once)."""
    path = Path(run_dir) / LOCK
    if not path.is_file():
        return False
    if fcntl is None:  # pragma: no cover - Windows
        status = read_status(run_dir)
        return status.get("state") == "running" and _pid_alive(status.get("pid"))
    with open(path, "r", encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return False


def _pid_alive(pid) -> bool:  # pragma: no cover - Windows fallback
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


def state(run_dir: Path) -> tuple[str, str | None]:
    """(state, reason) of a run folder; state is one of STATES."""
    run_dir = Path(run_dir)
    if (run_dir / "metrics.json").is_file():
        return "finished", None
    if lock_held(run_dir):
        return "running", None
    status = read_status(run_dir)
    if status.get("state") == "failed":
        return "failed", status.get("error")
    if status.get("state") == "running":
        return "interrupted", "the training process ended without recording an outcome (killed or crashed)"
    if status.get("state") == "interrupted":
        return "interrupted", status.get("error")
    return "interrupted", "no finished metrics and no training process"


def resumable(run_dir: Path) -> bool:
    """An unfinished run with a checkpoint resumes when trained again with its own config."""
    return (Path(run_dir) / "checkpoints" / "last.json").is_file() and not (Path(run_dir) / "metrics.json").is_file()
