"""Runs launched from the dashboard: each is a `tunelab train key=value ...` child process, exactly the command a
user would type (shown on the launch page), validated first with the same config code and messages as the CLI.

The child writes the run folder itself (config.yaml, run.lock, status.json, train.log, metrics.jsonl), so a run
started here looks the same as one started from a terminal. Its stdout/stderr go to
``<runs>/.tunelab-ui/logs/<name>-<time>.log``, which catches errors raised before the run folder exists.
Children live in their own session: stopping the dashboard does not stop them; Stop sends SIGINT (Ctrl-C), which
the recipe records as "interrupted" and which leaves a resumable checkpoint.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunelab import runstate
from tunelab.errors import ConfigError, TunelabError
from tunelab.ui import index

# The child runs `tunelab train ...` with Python's Ctrl-C handler in place even when the dashboard itself was started
# with SIGINT ignored (a background job of a script, nohup ... &): ignored signals stay ignored across exec, and Stop
# would then do nothing. A handler (unlike SIG_IGN) resets to the default on exec, so the tunelab process and its
# tcmalloc re-exec start with Python's own KeyboardInterrupt handler.
CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from tunelab.cli import main; sys.exit(main())"
)
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
UI_DIR = ".tunelab-ui"


@dataclass
class Job:
    run_id: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen
    started: float = field(default_factory=time.time)
    returncode: int | None = None

    def view(self) -> dict:
        return {
            "run_id": self.run_id,
            "pid": self.proc.pid,
            "command": display(self.argv),
            "log": self.log.name,
            "started": self.started,
            "returncode": self.returncode,
            "running": self.returncode is None,
        }


def display(argv: list[str]) -> str:
    """The command as a user would type it (`tunelab train ...`)."""
    shown = ["tunelab", *argv[3:]] if argv[1:3] in (["-m", "tunelab.cli"], ["-c", CHILD]) else argv
    return " ".join(shlex.quote(a) for a in shown)


class Launcher:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def plan(self, values: dict[str, str]) -> dict:
        """Validate form values (key -> override text) as the CLI would; returns the overrides and the command."""
        from tunelab import config

        values = {str(k): "" if v is None else str(v) for k, v in values.items()}
        bad = [k for k in values if not KEY_RE.match(k)]
        if bad:
            raise ConfigError(
                f"form: '{bad[0]}' is not a config key", problems=[(bad[0], f"'{bad[0]}' is not a config key")]
            )
        name = values.pop("output_dir", "").strip() or time.strftime("run-%Y%m%d-%H%M%S")
        folder = self._output_dir(name)
        overrides = [f"{k}={v}" for k, v in values.items()] + [f"output_dir={folder}"]
        cfg = config.load(None, overrides)
        resumes = self._check_folder(folder)
        argv = [sys.executable, "-c", CHILD, "train", *overrides, "--quiet"]
        return {
            "run_id": folder.relative_to(self.root).as_posix(),
            "argv": argv,
            "command": display(argv),
            "resumes": resumes,
            "cwd": os.getcwd(),
            "config": cfg.model_dump(mode="json"),
        }

    def _output_dir(self, name: str) -> Path:
        try:
            folder = index.resolve(self.root, name)
        except index.Forbidden as exc:
            raise ConfigError(f"output_dir: {exc}", problems=[("output_dir", f"output_dir: {exc}")]) from None
        if folder == self.root or UI_DIR in folder.relative_to(self.root).parts:
            msg = f"output_dir: '{name}' must name a run folder inside the runs folder"
            raise ConfigError(msg, problems=[("output_dir", msg)])
        return folder

    def _check_folder(self, folder: Path) -> bool:
        """True when the folder holds an unfinished run this launch resumes; errors for folders it must not touch."""
        msg = None
        if (folder / "metrics.json").is_file():
            msg = f"output_dir: {folder} already holds a finished run; choose another name"
        elif runstate.lock_held(folder):
            msg = f"output_dir: a run is training in {folder} right now"
        elif folder.exists() and not (folder / "config.yaml").is_file() and any(folder.iterdir()):
            msg = f"output_dir: {folder} exists and is not a tunelab run folder"
        if msg:
            raise ConfigError(msg, problems=[("output_dir", msg)])
        return (folder / "config.yaml").is_file()

    def launch(self, values: dict[str, str]) -> dict:
        plan = self.plan(values)
        job = self._start(plan["run_id"], plan["argv"], Path(plan["cwd"]))
        return {**{k: v for k, v in plan.items() if k != "argv"}, "job": job.view()}

    def resume(self, run_id: str) -> dict:
        """Train an unfinished run again with its own config.yaml, in the directory it was started from."""
        folder = index.run_dir(self.root, run_id)
        state, _ = runstate.state(folder)
        if state in ("running", "finished"):
            raise TunelabError(f"run '{run_id}' is {state}; only a failed or interrupted run can be resumed")
        old = self.jobs.get(run_id)
        if old is not None and old.returncode is None:  # it released the run's lock and is exiting: let it finish
            try:
                old.returncode = old.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                raise TunelabError(
                    f"run '{run_id}': its previous process (pid {old.proc.pid}) has not exited yet"
                ) from None
        cwd = Path(runstate.read_status(folder).get("cwd") or os.getcwd())
        argv = [sys.executable, "-c", CHILD, "train", str(folder / "config.yaml"), "--quiet"]
        return {"run_id": run_id, "command": display(argv), "job": self._start(run_id, argv, cwd).view()}

    def _start(self, run_id: str, argv: list[str], cwd: Path) -> Job:
        with self._lock:
            old = self.jobs.get(run_id)
            if old is not None and old.returncode is None:
                raise TunelabError(f"run '{run_id}' was launched from here and is still running (pid {old.proc.pid})")
            logs = self.root / UI_DIR / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            log = logs / f"{run_id.replace('/', '_')}-{time.strftime('%Y%m%d-%H%M%S')}.log"
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            with open(log, "w", encoding="utf-8") as out:
                proc = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=str(cwd if cwd.is_dir() else Path.cwd()),
                    start_new_session=True,
                )
            job = self.jobs[run_id] = Job(run_id, argv, log, proc)
        threading.Thread(target=self._reap, args=(job,), daemon=True).start()
        return job

    @staticmethod
    def _reap(job: Job) -> None:
        job.returncode = job.proc.wait()

    def stop(self, run_id: str) -> dict:
        """Ctrl-C the run's trainer: a child of ours, or whichever process holds the run's lock."""
        job = self.jobs.get(run_id)
        if job is not None and job.returncode is None:
            os.kill(job.proc.pid, signal.SIGINT)
            return {"run_id": run_id, "pid": job.proc.pid, "signal": "SIGINT"}
        folder = index.run_dir(self.root, run_id)
        if not runstate.lock_held(folder):
            raise TunelabError(f"run '{run_id}' is not running")
        pid = runstate.read_status(folder).get("pid")
        if not isinstance(pid, int):
            raise TunelabError(f"run '{run_id}': its status.json names no process to stop")
        os.kill(pid, signal.SIGINT)
        return {"run_id": run_id, "pid": pid, "signal": "SIGINT"}

    def job(self, run_id: str) -> dict | None:
        job = self.jobs.get(run_id)
        if job is None:
            return None
        return {**job.view(), "output": index.tail(job.log, 16_000)}

    def views(self) -> list[dict]:
        return [j.view() for j in self.jobs.values()]
