"""Trackers read back by their own readers hold the same values as metrics.jsonl (TensorBoard event files, the
MLflow client on its file store, Trackio's local store), plus hyper-parameters, final metrics and the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, write_sentiment


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, tiny_bert_dir):
    """A tiny run logged to all three trackers, trained by the real command in a child process (trackio keeps
    its store location per process)."""
    pytest.importorskip("tensorboard", reason="tensorboard not installed (pip install tunelab[tracking])")
    pytest.importorskip("mlflow", reason="mlflow-skinny not installed (pip install tunelab[tracking])")
    pytest.importorskip("trackio", reason="trackio not installed (pip install tunelab[tracking])")
    tmp = tmp_path_factory.mktemp("tracked")
    data = write_sentiment(tmp / "train.tsv", n=96)
    run = tmp / "runs" / "tracked"
    overrides = [
        f"model.name={tiny_bert_dir}",
        f"data.train={data}",
        "data.text_column=sentence",
        f"output_dir={run}",
        "train.batch_size=8",
        "train.lr=1e-2",
        "train.log_every=2",
        "train.eval_every=4",
        "train.max_steps=12",
        "train.precision=fp32",
        "train.threads=1",
        "speed.cache=false",
        "method=lora",
        "tracking.backends=[tensorboard,mlflow,trackio]",
        f"tracking.trackio_dir={tmp / 'trackio'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TUNELAB_TCMALLOC": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "train", *overrides, "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return run, records, tmp


def expected(records):
    """{(key, step): value} for every number in metrics.jsonl."""
    return {
        (k, r["step"]): float(v) for r in records for k, v in r.items() if k != "step" and isinstance(v, (int, float))
    }


def test_tensorboard_event_files_hold_the_metrics_jsonl_values(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, records, _ = tracked_run
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    got = {(tag, e.step): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}
    want = expected(records)
    assert {"loss", "lr", "dev/accuracy", "dev/loss"} <= {k for k, _ in want}
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key  # event files hold float32
    final = json.loads((run / "metrics.json").read_text())
    assert got[("final/dev/accuracy", 12)] == pytest.approx(final["dev"]["accuracy"], rel=1e-6)
    assert "report" in acc.Tags()["tensors"] or any("report" in t for t in acc.Tags()["tensors"])


def test_mlflow_file_store_holds_params_metrics_and_the_report(tracked_run):
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    run, records, _ = tracked_run
    client = MlflowClient(tracking_uri=(run.parent / "mlruns").as_uri())
    exp = client.get_experiment_by_name("tunelab")
    (mrun,) = client.search_runs([exp.experiment_id])
    assert mrun.info.run_name == "tracked" and mrun.info.status == "FINISHED"
    assert mrun.data.params["method.name"] == "lora" and mrun.data.params["train.lr"] == "0.01"
    want = expected(records)
    for key in {k for k, _ in want}:
        history = {m.step: m.value for m in client.get_metric_history(mrun.info.run_id, key)}
        for (k, step), value in want.items():
            if k == key:
                assert history[step] == pytest.approx(value, rel=1e-12), (key, step)
    final = json.loads((run / "metrics.json").read_text())
    assert mrun.data.metrics["final/dev/accuracy"] == pytest.approx(final["dev"]["accuracy"])
    assert {"report.md", "metrics.json", "config.yaml"} <= {a.path for a in client.list_artifacts(mrun.info.run_id)}


def test_trackio_local_store_holds_the_metrics(tracked_run):
    run, records, tmp = tracked_run
    code = (
        "import json, sys; from trackio.sqlite_storage import SQLiteStorage\n"
        "print(json.dumps(SQLiteStorage.get_logs('tunelab', 'tracked'), default=str))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TRACKIO_DIR": str(tmp / "trackio")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    logs = json.loads(out.stdout.strip().splitlines()[-1])
    got = {
        (k, row["step"]): v
        for row in logs
        for k, v in row.items()
        if isinstance(v, (int, float)) and k not in ("step",)
    }
    for key, value in expected(records).items():
        assert got[key] == pytest.approx(value, rel=1e-9), key


def test_a_resumed_run_continues_its_mlflow_run_and_an_interrupt_marks_it(tmp_path):
    """The MLflow tracker as the loop drives it: an interrupted run is KILLED; its resumption continues the
    same MLflow run (same id, params once), then the recipe's summary adds final metrics to the finished run."""
    pytest.importorskip("mlflow", reason="mlflow-skinny not installed (pip install tunelab[tracking])")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    from tunelab.training import trackers
    from tunelab.training.tracking import Tracker

    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    cfg = trackers.Config(backends=["mlflow"])
    (first,) = trackers.build(cfg, {"train": {"lr": 0.1}})
    assert isinstance(first, Tracker)
    first.start(run, 0)
    first.log({"step": 1, "loss": 0.9})
    first.finish("interrupted")
    run_id = json.loads((run / trackers.STATE_FILE).read_text())["mlflow_run_id"]
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    assert client.get_run(run_id).info.status == "KILLED"
    (second,) = trackers.build(cfg, {"train": {"lr": 0.1}})
    second.start(run, 1)
    assert client.get_run(run_id).info.status == "RUNNING"
    second.log({"step": 2, "loss": 0.8, "note": "text is not a metric"})
    second.finish("finished")
    second.summary({"dev": {"accuracy": 0.5, "per_class": {}}, "steps": 2}, [])
    assert json.loads((run / trackers.STATE_FILE).read_text())["mlflow_run_id"] == run_id
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.data.params == {"train.lr": "0.1"}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(1, 0.9), (2, 0.8)]
    assert got.data.metrics["final/dev/accuracy"] == 0.5
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "final/dev/accuracy")] == [(2, 0.5)]


def test_a_failed_run_is_failed_in_mlflow(tmp_path):
    pytest.importorskip("mlflow", reason="mlflow-skinny not installed (pip install tunelab[tracking])")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    from tunelab.training import trackers

    run = tmp_path / "r"
    run.mkdir()
    (tracker,) = trackers.build(trackers.Config(backends=["mlflow"], mlflow_uri=(tmp_path / "store").as_uri()), {})
    tracker.start(run, 0)
    tracker.finish("failed")
    run_id = json.loads((run / trackers.STATE_FILE).read_text())["mlflow_run_id"]
    assert MlflowClient(tracking_uri=(tmp_path / "store").as_uri()).get_run(run_id).info.status == "FAILED"
