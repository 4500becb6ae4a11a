"""Run state from files alone: finished, running (lock held), failed (with the error), interrupted (Ctrl-C, killed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tunelab import runstate
from tunelab.errors import DataError, TunelabError


def _folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: classification\n")
    return run


def test_running_then_finished(tmp_path):
    run = _folder(tmp_path)
    lines = []
    with runstate.active(run, lines.append) as log:
        log("hello")
        assert runstate.state(run) == ("running", None)
        assert runstate.lock_held(run)
        runstate.note(run, trainable_parameters=5)
        (run / "metrics.json").write_text("{}")
    assert lines == ["hello"] and "hello" in (run / "train.log").read_text()
    assert runstate.state(run) == ("finished", None)
    status = runstate.read_status(run)
    assert (
        status["state"] == "finished" and status["trainable_parameters"] == 5 and status["ended"] >= status["started"]
    )


def test_failure_records_the_error_and_ctrl_c_records_interrupted(tmp_path):
    run = _folder(tmp_path)
    with pytest.raises(DataError):
        with runstate.active(run, lambda m: None):
            raise DataError("train.tsv:3: empty text")
    assert runstate.state(run) == ("failed", "train.tsv:3: empty text")
    assert "error: train.tsv:3: empty text" in (run / "train.log").read_text()
    with pytest.raises(KeyboardInterrupt):
        with runstate.active(run, lambda m: None):
            raise KeyboardInterrupt
    state, reason = runstate.state(run)
    assert state == "interrupted" and "Ctrl-C" in reason


def test_a_second_trainer_in_the_same_folder_is_refused(tmp_path):
    run = _folder(tmp_path)
    with runstate.active(run, lambda m: None):
        with pytest.raises(TunelabError, match="another process .* is training in this folder"):
            with runstate.active(run, lambda m: None):
                pass


def test_a_killed_trainer_reads_as_interrupted(tmp_path):
    run = _folder(tmp_path)
    code = (
        "import sys, time; from tunelab import runstate\n"
        f"with runstate.active(__import__('pathlib').Path({str(run)!r}), print):\n"
        "    print('in', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "in"
    assert runstate.state(run)[0] == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    state, reason = runstate.state(run)
    assert state == "interrupted" and "without recording an outcome" in reason
    assert json.loads((run / "status.json").read_text())["state"] == "running"  # what the dead process left


def test_resumable_needs_a_checkpoint_and_no_final_metrics(tmp_path):
    run = _folder(tmp_path)
    assert not runstate.resumable(run)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.json").write_text('{"step": 4, "path": "step-4"}')
    assert runstate.resumable(run)
    (run / "metrics.json").write_text("{}")
    assert not runstate.resumable(run)
