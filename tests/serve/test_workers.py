"""`tunelab serve --workers 2`: two processes behind one port, answering alike, with /metrics adding up both."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from tests.serve.harness import free_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_share_one_port_and_their_metrics(tiny_llama_dir):
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNELAB_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "tunelab.cli",
        "serve",
        f"tiny={tiny_llama_dir}",
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # both workers up: /metrics counts 2 processes
            try:
                if "tunelab_workers 2" in httpx.get(url + "/metrics", timeout=2).text:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.5)
        body = {"model": "tiny", "prompt": "the movie was", "max_tokens": 5, "temperature": 0}
        texts = set()
        for _ in range(8):
            with httpx.Client() as http:  # a new connection each time: the kernel picks a worker
                texts.add(http.post(url + "/v1/completions", json=body, timeout=60).json()["choices"][0]["text"])
        time.sleep(1.5)  # each worker writes its snapshot every second
        lines = dict(
            line.rsplit(" ", 1) for line in httpx.get(url + "/metrics").text.splitlines() if line and line[0] != "#"
        )
    finally:
        proc.terminate()
        proc.wait(30)
    started = next(line for line in proc.stderr.read().splitlines() if " workers (" in line)
    workers = [int(p) for p in started.split("(")[1].split(")")[0].split(", ")]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "workers outlived the terminated supervisor"
    assert len(texts) == 1  # both workers load the same model and decode alike
    assert lines["tunelab_workers"] == "2"
    assert float(lines['tunelab_requests_total{route="/v1/completions",status="200"}']) == 8
    assert float(lines['tunelab_generated_tokens_total{model="tiny"}']) == 40
