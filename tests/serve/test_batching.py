"""The batching worker under load: concurrent requests share generate calls and still equal their solo
output; a full queue answers 429; a client that disconnects, or a timeout, stops generation."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from tests.serve.harness import client, running
from tunelab.generation import GenerationConfig, generate
from tunelab.serve import registry


@pytest.fixture(scope="module")
def served(tiny_llama_dir):
    return registry.load_all([f"tiny={tiny_llama_dir}"], log=lambda m: None)


@contextmanager
def slowed(served, seconds: float):
    """Make every forward pass of the tiny model take at least ``seconds`` (so requests overlap)."""
    handle = served["tiny"].model.register_forward_pre_hook(lambda *_: time.sleep(seconds))
    try:
        yield
    finally:
        handle.remove()


def _metrics(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {
        k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    }


@pytest.mark.parametrize("batching", ["continuous", "static"])
def test_concurrent_requests_are_batched_and_equal_their_solo_output(served, batching):
    s = served["tiny"]
    prompts = ["the movie was", "good", "a very dull plot and", "love it", "the actor", "this film is not"]
    solo = [
        generate(s.model, s.tokenizer, [p], GenerationConfig(max_new_tokens=4 + i), log=lambda m: None)[0].text
        for i, p in enumerate(prompts)
    ]
    with slowed(served, 0.005), running(served, max_batch_size=8, max_wait_ms=300, batching=batching) as url:
        c = client(url)
        barrier = threading.Barrier(len(prompts))

        def one(i):
            barrier.wait()
            return (
                c.completions.create(model="tiny", prompt=prompts[i], max_tokens=4 + i, temperature=0).choices[0].text
            )

        with ThreadPoolExecutor(len(prompts)) as pool:
            got = list(pool.map(one, range(len(prompts))))
        m = _metrics(url)
    assert got == solo
    assert m['tunelab_batch_size_bucket{le="1"}'] < m["tunelab_batch_size_count"]  # some step held > 1 request
    if batching == "static":  # one observation per generate call
        assert m["tunelab_batch_size_sum"] == len(prompts)


def test_full_queue_is_429_with_retry_after(served):
    with slowed(served, 0.02), running(served, max_batch_size=1, queue_size=1, retry_after_s=2) as url:
        body = {"model": "tiny", "prompt": "hello", "max_tokens": 15, "temperature": 0}
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda _: httpx.post(url + "/v1/completions", json=body, timeout=60), range(6)))
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 429} and codes.count(200) >= 2, codes
    busy = next(r for r in responses if r.status_code == 429)
    assert busy.headers["retry-after"] == "2" and busy.json()["error"]["code"] == "queue_full"
    assert all(r.json()["usage"]["completion_tokens"] == 15 for r in responses if r.status_code == 200)


def test_client_disconnect_stops_generation(served):
    with slowed(served, 0.01), running(served) as url:
        body = {"model": "tiny", "prompt": "hello", "max_tokens": 200, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ") and next(lines) == ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _metrics(url).get(
            'tunelab_cancelled_total{reason="client_gone_or_timeout"}'
        ):
            time.sleep(0.1)
        m = _metrics(url)
    assert m['tunelab_cancelled_total{reason="client_gone_or_timeout"}'] == 1
    assert m['tunelab_generated_tokens_total{model="tiny"}'] < 100  # 200 would take >= 2 s at 10 ms a token


def test_timeout_is_504_and_stops_generation(served):
    with slowed(served, 0.01), running(served, timeout_s=0.5) as url:
        start = time.monotonic()
        r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 200}, timeout=60)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert time.monotonic() - start < 2.0
        time.sleep(0.3)
        assert _metrics(url)['tunelab_generated_tokens_total{model="tiny"}'] < 100
