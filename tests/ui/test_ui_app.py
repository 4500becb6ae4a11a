"""`tunelab ui` over HTTP (no browser): security, the CLI's validation messages, launch/stop/resume, playground."""

from __future__ import annotations

import os
import signal
import time

from starlette.testclient import TestClient

from tests.conftest import write_sentiment
from tests.ui.conftest import tiny_overrides
from tunelab import cli, config, docs, runstate
from tunelab.ui import schema
from tunelab.ui.app import build_app
from tunelab.ui.guard import Guard

KEY = "test-key-0123456789"
JSON = {"Content-Type": "application/json"}


def client(root, keys=(), loopback=True, read_only=False, base="http://127.0.0.1:7860"):
    return TestClient(Guard(build_app(root, read_only=read_only, poll_s=0.1), list(keys), loopback), base_url=base)


def test_loopback_dashboard_refuses_foreign_host_headers(tmp_path):
    c = client(tmp_path)
    assert c.get("/api/runs").status_code == 200
    r = c.get("/api/runs", headers={"Host": "attacker.example:7860"})
    assert r.status_code == 400 and "Host" in r.json()["error"]


def test_api_key_by_header_or_by_cookie_set_from_the_url(tmp_path):
    c = client(tmp_path, keys=[KEY], loopback=False, base="http://0.0.0.0:7860")
    assert c.get("/api/runs").status_code == 401
    assert c.get("/api/runs", headers={"Authorization": "Bearer wrong-key-000"}).status_code == 401
    assert c.get("/api/runs", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    r = c.get(f"/?key={KEY}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/" and "HttpOnly" in r.headers["set-cookie"]
    assert c.get("/api/runs").status_code == 200  # the cookie now carries the key (EventSource cannot send headers)


def test_writes_must_be_same_origin_json(tmp_path):
    c = client(tmp_path)
    assert c.post("/api/validate", content=b'{"values": {}}', headers={"Content-Type": "text/plain"}).status_code == 415
    r = c.post("/api/validate", json={"values": {}}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert c.post("/api/validate", json={"values": {}}).json()["ok"] is True


def test_read_only_refuses_launch_resume_and_stop(tmp_path):
    c = client(tmp_path, read_only=True)
    for path in ("/api/launch", "/api/resume", "/api/stop"):
        r = c.post(path, json={"values": {}, "id": "x"})
        assert r.status_code == 403 and "--read-only" in r.json()["error"]
    assert c.get("/api/info").json()["read_only"] is True


def test_path_traversal_through_the_api_is_refused(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "config.yaml").write_text("task: classification\n")
    c = client(tmp_path / "runs")
    assert c.get("/api/run", params={"id": ".."}).status_code == 403
    assert c.get("/api/run/file", params={"id": "..", "name": "config.yaml"}).status_code == 403
    assert c.get("/api/compare", params={"ids": "../../etc"}).status_code == 403
    r = c.post("/api/validate", json={"values": {"output_dir": "../outside"}})
    assert (
        r.json()["problems"][0]["key"] == "output_dir"
        and "outside the runs folder" in r.json()["problems"][0]["message"]
    )
    assert c.get("/static/../app.py").status_code == 404


def test_validation_messages_are_the_clis(tmp_path, capsys):
    overrides = ["train.lrr=1", "method.name=lora", "method.r=0", "train.batch_size=abc"]
    assert cli.main(["train", *overrides]) == 2
    cli_message = capsys.readouterr().err.strip().removeprefix("error: ")
    c = client(tmp_path)
    res = c.post("/api/validate", json={"values": dict(o.split("=", 1) for o in overrides)}).json()
    assert res["ok"] is False and res["error"] == cli_message
    keys = {p["key"] for p in res["problems"]}
    assert {"method.r", "train.batch_size", "train.lrr"} <= keys
    for p in res["problems"]:
        assert p["message"] in cli_message  # each inline message is a piece of the CLI's line
    res = c.post("/api/validate", json={"values": {"method.name": "lorra"}}).json()
    assert res["problems"] == [
        {
            "key": "method.name",
            "message": "method.name: unknown method 'lorra' (did you mean 'lora'?); valid: "
            + ", ".join(__import__("tunelab.methods", fromlist=["METHODS"]).METHODS),
        }
    ]


def test_non_loopback_host_without_a_key_is_refused(tmp_path, capsys):
    assert cli.main(["ui", "--runs", str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_the_form_has_every_config_key_with_its_description():
    form = {f["key"]: f for f in schema.form()}
    for key, _default, desc in docs.describe():
        name = key.split()[0]
        assert name in form, name
        assert desc in [f["description"] for f in schema.form() if f["key"] == name] or name in (
            "method.name",
            "task.name",
        )
    assert form["train.precision"]["kind"] == "select" and form["train.precision"]["choices"] == [
        "auto",
        "fp32",
        "bf16",
    ]
    lora_r = [f for f in schema.form() if f["key"] == "method.r" and f["when"] == {"method.name": "lora"}]
    assert lora_r and lora_r[0]["default"] == "8"


def _wait(c, run_id, states, timeout=120, cond=lambda row: True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = {r["id"]: r for r in c.get("/api/runs").json()["runs"]}
        row = rows.get(run_id)
        if row and row["state"] in states and cond(row):
            return row
        time.sleep(0.3)
    raise AssertionError(f"{run_id} never reached {states}: {c.get('/api/job', params={'id': run_id}).json()}")


def test_launch_stop_and_resume_a_run(tmp_path, tiny_bert_dir):
    root = tmp_path / "runs"
    root.mkdir()
    data = write_sentiment(tmp_path / "train.tsv", n=96)
    values = dict(
        o.split("=", 1)
        for o in tiny_overrides(
            tiny_bert_dir, data, "long", "train.max_steps=3000", "train.save_every=5", "train.eval_every=1000"
        )
    )
    c = client(root)
    plan = c.post("/api/validate", json={"values": values}).json()
    assert plan["ok"] and plan["run_id"] == "long" and plan["command"].startswith("tunelab train ")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under `nohup tunelab ui &`: children inherit SIG_IGN
    try:
        c.post("/api/launch", json={"values": values}).raise_for_status()
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        _wait(
            c,
            "long",
            {"running"},
            cond=lambda r: r["step"] >= 6 and (root / "long" / "checkpoints" / "last.json").is_file(),
        )
        assert c.post("/api/stop", json={"id": "long"}).json()["signal"] == "SIGINT"
        row = _wait(c, "long", {"interrupted", "failed"})
        assert row["state"] == "interrupted" and row["resumable"], row
        # the loop finished the step, saved and reported 'interrupted' to its trackers (not a failure)
        assert "interrupted by Ctrl-C (SIGINT) at step" in row["reason"] and "resumable" in row["reason"], row
        stopped_at = row["step"]
        c.post("/api/resume", json={"id": "long"}).raise_for_status()
        row = _wait(c, "long", {"running", "finished"}, cond=lambda r: r["step"] > stopped_at)
        c.post("/api/stop", json={"id": "long"})
        row = _wait(c, "long", {"interrupted", "failed", "finished"})
        log = (root / "long" / "train.log").read_text()
        assert "resumed from" in log, log[-2000:]
    finally:  # never leave a 3000-step trainer behind when an assertion fails
        status = runstate.read_status(root / "long")
        if runstate.lock_held(root / "long") and isinstance(status.get("pid"), int):
            os.kill(status["pid"], signal.SIGKILL)


def test_playground_generates_from_a_tiny_causal_run(tmp_path, tiny_llama_dir, alpaca_writer):
    from tunelab.recipes import finetune

    root = tmp_path / "runs"
    train = alpaca_writer(tmp_path / "train.json", 24)
    cfg = config.load(
        None,
        [
            "task=causal_lm",
            f"model.name={tiny_llama_dir}",
            f"data.train={train}",
            f"output_dir={root / 'lm'}",
            "model.max_length=64",
            "train.max_steps=2",
            "train.batch_size=8",
            "train.precision=fp32",
            "task.eval_generations=0",
            "speed.cache=false",
            "train.threads=1",
        ],
    )
    finetune.run(cfg, quiet=True, log=lambda m: None)
    c = client(root)
    res = c.post(
        "/api/generate",
        json={
            "id": "lm",
            "messages": [{"role": "user", "content": "Say the word good"}],
            "decoding": {"max_new_tokens": 5},
        },
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["new_tokens"] <= 5 and body["finish_reason"] in ("length", "stop") and isinstance(body["text"], str)
    r = c.post("/api/generate", json={"id": "lm", "prompt": "x", "decoding": {"max_new_tokens": 5000}})
    assert r.status_code == 400 and "max_new_tokens" in r.json()["error"]
    r = c.post("/api/predict", json={"id": "lm", "texts": ["x"]})
    assert r.status_code == 400 and "use generate" in r.json()["error"]
    (row,) = c.get("/api/runs").json()["runs"]
    assert row["task"] == "causal_lm" and row["generates"]  # the front end offers chat, not predict


def test_events_stream_new_records_log_lines_and_state_changes_live(tmp_path):
    """The run page's live feed: records appended while a trainer holds the lock arrive in order, then 'finished'."""
    import json
    import threading

    import httpx

    from tests.browser import ServerThread
    from tunelab import runstate

    root = tmp_path / "runs"
    run = root / "live"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("task: classification\ntrain:\n  metric: accuracy\n")
    started, step2 = threading.Event(), threading.Event()

    def trainer():
        with runstate.active(run, lambda m: None) as session:
            with open(run / "metrics.jsonl", "a") as f:
                f.write('{"step": 1, "loss": 0.7}\n')
            session.log("step one done")
            started.set()
            step2.wait(10)
            with open(run / "metrics.jsonl", "a") as f:
                f.write('{"step": 2, "loss": 0.5}\n{"step": 2, "dev/accuracy": 0.75}\n')
            time.sleep(0.5)
            (run / "metrics.json").write_text('{"dev": {"accuracy": 0.75}}')

    app = Guard(build_app(root, poll_s=0.1), [], loopback=True)
    with ServerThread(app) as srv:
        thread = threading.Thread(target=trainer)
        thread.start()
        started.wait(10)
        events, event = [], None
        with httpx.stream("GET", f"{srv.url}/api/run/events", params={"id": "live"}, timeout=30) as resp:
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append((event, json.loads(line[6:])))
                    if event == "metrics":
                        step2.set()
                    if event == "state" and events[-1][1]["state"] == "finished":
                        break
        thread.join(10)
    records = [r for kind, data in events if kind == "metrics" for r in data["records"]]
    assert records == [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.5}, {"step": 2, "dev/accuracy": 0.75}]
    states = [data["state"] for kind, data in events if kind == "state"]
    assert states[0] == "running" and states[-1] == "finished"
    final = [data for kind, data in events if kind == "state"][-1]
    assert final["value"] == 0.75 and final["value_kind"] == "best"
