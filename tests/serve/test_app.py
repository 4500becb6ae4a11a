"""The server end to end over real HTTP on 127.0.0.1, with the official `openai` client and a tiny Llama."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.serve.harness import client, running
from tunelab.generation import GenerationConfig, generate
from tunelab.serve import registry

CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say the word good"}]


@pytest.fixture(scope="module")
def tiny_served(tiny_llama_dir):
    """The tiny random Llama (SmolLM2's tokenizer and chat template) served as model 'tiny'."""
    return registry.load_all([f"tiny={tiny_llama_dir}"], log=lambda m: None)


@pytest.fixture(scope="module")
def base(tiny_served):
    with running(tiny_served, max_tokens=64) as url:
        yield url


def _reference(tiny_served, prompt, max_new_tokens):
    s = tiny_served["tiny"]
    return generate(
        s.model,
        s.tokenizer,
        [prompt],
        GenerationConfig(max_new_tokens=max_new_tokens),
        template=s.template,
        log=lambda m: None,
    )[0]


def test_models_health_and_completion_equals_generate(base, tiny_served):
    c = client(base)
    assert [m.id for m in c.models.list().data] == ["tiny"]
    assert httpx.get(base + "/health").json()["status"] == "ok"
    r = c.completions.create(model="tiny", prompt="the movie was", max_tokens=10, temperature=0)
    ref = _reference(tiny_served, "the movie was", 10)
    assert r.choices[0].text == ref.text and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 10 and r.usage.prompt_tokens == len(
        tiny_served["tiny"].tokenizer("the movie was")["input_ids"]
    )


def test_chat_equals_generate_and_stream_concatenates_to_it(base, tiny_served):
    c = client(base)
    full = c.chat.completions.create(model="tiny", messages=CHAT, max_tokens=12, temperature=0)
    assert full.choices[0].message.content == _reference(tiny_served, CHAT, 12).text
    chunks = list(
        c.chat.completions.create(
            model="tiny",
            messages=CHAT,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].delta.content]
    assert len(pieces) > 1  # tokens arrive incrementally
    assert "".join(pieces) == full.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == full.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_raw_stream_is_openai_wire_format_ending_in_done(base):
    body = {"model": "tiny", "prompt": "hello world", "max_tokens": 5, "temperature": 0, "stream": True}
    with httpx.stream("POST", base + "/v1/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert all(ch["object"] == "text_completion" and ch["model"] == "tiny" for ch in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stop_strings_n_and_seed(base):
    c = client(base)
    r = c.completions.create(model="tiny", prompt="the movie was", max_tokens=10, temperature=0)
    text = r.choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    cut = c.completions.create(model="tiny", prompt="the movie was", max_tokens=10, temperature=0, stop=[stop])
    assert cut.choices[0].text == text[: text.find(stop)] and cut.choices[0].finish_reason == "stop"
    a, b = (
        c.completions.create(model="tiny", prompt="hi", max_tokens=8, temperature=1.0, seed=7, n=2) for _ in range(2)
    )
    assert [x.text for x in a.choices] == [x.text for x in b.choices] and len(a.choices) == 2
    assert [x.index for x in a.choices] == [0, 1]


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 65}, "max_tokens"),  # above the server's cap of 64
        ({"top_p": 0}, "top_p"),
        ({"n": "two"}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"logprobs": 6}, "logprobs"),
        ({"echo": True}, "echo"),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(base, extra, field):
    r = httpx.post(base + "/v1/completions", json={"model": "tiny", "prompt": "hi", **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field and field in err["message"] and err["type"] == "invalid_request_error"


def test_chat_rejects_the_functions_api_and_accepts_harmless_fields(base):
    c = client(base)
    with pytest.raises(openai.BadRequestError, match="deprecated functions API is not supported"):
        c.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2, functions=[{"name": "f"}])
    r = c.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=2, user="u1", metadata={"a": "b"}, store=False
    )
    assert r.choices[0].message.role == "assistant"
    r = httpx.post(base + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]


@pytest.mark.parametrize("prompt", ["", ["hi", ""], [""]])
def test_empty_prompts_are_400_for_strings_and_lists_alike(base, prompt):
    r = httpx.post(base + "/v1/completions", json={"model": "tiny", "prompt": prompt, "max_tokens": 2})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "prompt" and "empty prompt" in err["message"]


def test_temperature_rule_is_the_generate_commands_rule(tiny_served):
    """temperature > 0 samples and 0 is greedy, in serve and in `tunelab generate` alike (one function decides)."""
    from types import SimpleNamespace

    from tunelab.generation import commands
    from tunelab.serve.app import _decoding
    from tunelab.serve.config import ServeConfig

    state = SimpleNamespace(cfg=ServeConfig())
    served = tiny_served["tiny"]
    for temperature, sampling in ((0.7, True), (0.0, False), (None, served.gen.do_sample)):
        body = SimpleNamespace(
            max_tokens=4,
            n=1,
            stop=None,
            temperature=temperature,
            top_p=None,
            top_k=None,
            repetition_penalty=None,
            seed=None,
        )
        cfg, _ = _decoding(state, served, body)
        flags = SimpleNamespace(
            **{**{k: None for k in list(commands.GEN_FLAGS) + ["stop"]}, "temperature": temperature}
        )
        given = commands._given(flags)
        assert cfg.do_sample is sampling and given.get("do_sample", served.gen.do_sample) is sampling, temperature
        if temperature:
            assert cfg.temperature == given["temperature"] == temperature


def test_prompt_longer_than_context_is_400(base):
    r = httpx.post(base + "/v1/completions", json={"model": "tiny", "prompt": "good " * 250, "max_tokens": 10})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert "context window of 256" in r.json()["error"]["message"]


def test_unknown_model_is_404_in_openai_format(base):
    with pytest.raises(openai.NotFoundError) as info:
        client(base).chat.completions.create(model="nope", messages=CHAT, max_tokens=2)
    assert info.value.body == {
        "message": "The model 'nope' does not exist; GET /v1/models lists the served models",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    # /v1/predict answers every task through its protocol: a causal LM generates a reply per input
    (answer,) = httpx.post(base + "/v1/predict", json={"model": "tiny", "input": "x"}).json()["data"]
    assert answer["input"] == "x" and isinstance(answer["output"], str)


def test_oversized_body_is_413(tiny_served):
    with running(tiny_served, max_body_bytes=2048) as url:
        r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "x" * 5000})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        chunked = httpx.post(
            url + "/v1/completions", content=iter([b'{"model": "tiny", "prompt": "', b"x" * 5000, b'"}'])
        )
        assert chunked.status_code == 413


def test_api_keys(tiny_served, monkeypatch):
    from tunelab.serve.server import api_keys

    monkeypatch.setenv("TUNELAB_API_KEYS", "k2, k3")
    keys = api_keys(["k1"])
    assert keys == ["k1", "k2", "k3"]
    with running(tiny_served, keys) as url:
        with pytest.raises(openai.AuthenticationError, match="wrong API key"):
            client(url, "bad").models.list()
        r = httpx.get(url + "/v1/models")
        assert r.status_code == 401 and r.json()["error"]["message"].startswith("missing API key")
        assert [m.id for m in client(url, "k3").models.list().data] == ["tiny"]
        assert httpx.get(url + "/health").status_code == 200  # not under /v1: probes need no key


def test_metrics_count_requests_tokens_and_batches(base):
    client(base).completions.create(model="tiny", prompt="hi", max_tokens=3, temperature=0)
    httpx.post(base + "/v1/completions", json={"model": "nope", "prompt": "hi"})
    text = httpx.get(base + "/metrics").text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines['tunelab_requests_total{route="/v1/completions",status="200"}']) >= 1
    assert float(lines['tunelab_requests_total{route="/v1/completions",status="404"}']) >= 1
    assert float(lines['tunelab_generated_tokens_total{model="tiny"}']) >= 3
    assert lines["tunelab_queue_depth"] == "0"
    assert float(lines["tunelab_batch_size_count"]) >= 1
    assert float(lines['tunelab_request_latency_seconds_count{route="/v1/completions"}']) >= 2
    assert "# TYPE tunelab_request_latency_seconds histogram" in text
