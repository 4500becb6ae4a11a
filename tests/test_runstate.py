"""Run state from files alone: finished, running (lock held), failed (with the error), interrupted (Ctrl-C, killed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tunelab import runstate
from tunelab.errors import DataError, TunelabError
from tunelab.training.interrupt import Interrupted


def _folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: classification\n")
    return run


def test_running_then_finished(tmp_path):
    run = _folder(tmp_path)
    lines = []
    with runstate.active(run, lines.append) as session:
        session.log("hello")
        assert runstate.state(run) == ("running", None)
        assert runstate.lock_held(run)
        session.note(trainable_parameters=5)
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


def test_the_loops_interrupt_reaches_status_through_the_tracker(tmp_path):
    """The loop reports 'interrupted' to its trackers and raises Interrupted (not a KeyboardInterrupt): the run
    reads as interrupted, with the step, not as failed."""
    run = _folder(tmp_path)
    with pytest.raises(Interrupted):
        with runstate.active(run, lambda m: None) as session:
            tracker = session.tracker
            tracker.start(run, 0)
            tracker.log({"step": 3, "epoch": 0.5, "loss": 0.7, "lr": 1e-3})
            assert runstate.read_status(run)["step"] == 3
            tracker.finish("interrupted")
            raise Interrupted(signal.SIGINT, 3, None)
    state, reason = runstate.state(run)
    assert state == "interrupted" and "at step 3" in reason and "no checkpoint to resume" in reason
    assert runstate.read_status(run)["loop"] == "interrupted"
    assert "error:" not in (run / "train.log").read_text()


def test_the_loops_failure_is_recorded_as_failed(tmp_path):
    run = _folder(tmp_path)
    with pytest.raises(RuntimeError):
        with runstate.active(run, lambda m: None) as session:
            session.tracker.start(run, 4)
            session.tracker.finish("failed")
            raise RuntimeError("nan loss")
    assert runstate.state(run) == ("failed", "RuntimeError: nan loss")
    assert runstate.read_status(run)["resumed_from"] == 4


def test_other_processes_of_a_multi_process_run_write_nothing(tmp_path):
    run = _folder(tmp_path)
    with runstate.active(run, lambda m: None, main=False) as session:
        session.note(trainable_parameters=5)
        session.tracker.finish("interrupted")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


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
