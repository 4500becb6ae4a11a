"""Continuous batching: requests join the running batch at the next step and leave it at once, each decoding as
it would alone (greedy and seeded sampling); the running cap holds; TTFT and inter-token histograms are exported;
embeddings requests are pooled into one forward."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serve.harness import client, running
from tests.serve.test_batching import _metrics, slowed
from tunelab.serve import registry


@pytest.fixture(scope="module")
def served(tiny_llama_dir):
    return registry.load_all([f"tiny={tiny_llama_dir}"], log=lambda m: None)


def _complete(url, prompt, max_tokens, **extra):
    r = client(url).completions.create(model="tiny", prompt=prompt, max_tokens=max_tokens, **extra)
    return r.choices[0].text


def test_a_request_joins_mid_flight_and_leaves_first(served):
    with running(served) as url:  # solo references, same server code path
        long_solo = _complete(url, "the movie was", 60, temperature=0)
        short_solo = _complete(url, "good", 3, temperature=0)
        seeded_solo = _complete(url, "a plot", 12, temperature=1.0, seed=11)
    with slowed(served, 0.01), running(served) as url:
        done: dict[str, float] = {}
        body = {"model": "tiny", "prompt": "the movie was", "max_tokens": 60, "temperature": 0, "stream": True}
        pieces = []

        def long_stream():
            with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        pieces.append(line)
            done["long"] = time.monotonic()

        t = threading.Thread(target=long_stream)
        t.start()
        while len(pieces) < 5:  # the long request is decoding
            time.sleep(0.01)
        short = _complete(url, "good", 3, temperature=0)
        done["short"] = time.monotonic()
        seeded = _complete(url, "a plot", 12, temperature=1.0, seed=11)
        t.join(60)
        m = _metrics(url)
    assert short == short_solo and seeded == seeded_solo
    assert done["short"] < done["long"]  # joined the running batch and left it before the long request ended
    import json

    text = "".join(json.loads(p[6:])["choices"][0]["text"] for p in pieces)
    assert text == long_solo
    assert m['tunelab_batch_size_bucket{le="1"}'] < m["tunelab_batch_size_count"]  # some steps ran 2 rows
    assert m['tunelab_time_to_first_token_seconds_count{model="tiny"}'] == 3
    assert m['tunelab_inter_token_latency_seconds_count{model="tiny"}'] == 59 + 2 + 11


def test_running_sequences_stay_under_the_cap(served):
    with slowed(served, 0.005), running(served, max_batch_size=2) as url:
        with ThreadPoolExecutor(5) as pool:
            texts = list(pool.map(lambda i: _complete(url, f"review {i}", 6, temperature=0), range(5)))
        m = _metrics(url)
    assert len(texts) == 5
    assert m['tunelab_batch_size_bucket{le="2"}'] == m["tunelab_batch_size_count"]  # never more than 2 rows
    assert m['tunelab_batch_size_bucket{le="1"}'] < m["tunelab_batch_size_count"]
    assert m["tunelab_running_sequences"] == 0


def test_embeddings_requests_are_pooled(served):
    with slowed(served, 0.05), running(served) as url:
        alone = client(url).embeddings.create(model="tiny", input="pooled text").data[0].embedding
        with ThreadPoolExecutor(6) as pool:
            got = list(
                pool.map(
                    lambda i: client(url).embeddings.create(model="tiny", input=["pooled text"] * (i + 1)), range(6)
                )
            )
        m = _metrics(url)
    assert [len(r.data) for r in got] == [1, 2, 3, 4, 5, 6]
    assert all(r.data[0].embedding == pytest.approx(alone, abs=1e-5) for r in got)
    assert m["tunelab_pooled_requests_sum"] > m["tunelab_pooled_requests_count"]  # some forward served > 1 request


def test_prefix_cache_reuses_the_shared_system_prompt_and_changes_nothing(served):
    chats = [
        [{"role": "system", "content": "You are terse and kind."}, {"role": "user", "content": q}]
        for q in ("Say good", "Name a colour", "Count to three")
    ]

    def answers(url):
        c = client(url)
        out = []
        for msgs in chats:
            r = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0, logprobs=True)
            out.append((r.choices[0].message.content, [e.logprob for e in r.choices[0].logprobs.content]))
        return out

    with running(served) as url:
        plain = answers(url)
    with running(served, prefix_cache=True) as url:
        cached = answers(url)
        m = _metrics(url)
    assert m['tunelab_prefix_cache_tokens_total{model="tiny"}'] >= 2 * 8  # the 2nd and 3rd chats reused a prefix
    for (text, lps), (text_c, lps_c) in zip(plain, cached):
        assert text == text_c and lps == pytest.approx(lps_c, abs=1e-4)
