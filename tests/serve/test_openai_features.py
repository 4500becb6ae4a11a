"""OpenAI API features through the official `openai` client against a real server (tiny Llama): n, logprobs that
are the model's own log-softmax, response_format enforced by constrained decoding, tools, embeddings, and a 400
naming each unsupported or invalid field."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import numpy as np
import pytest
import torch

from tests.serve.harness import client, running
from tunelab.generation import GenerationConfig, generate
from tunelab.serve import registry
from tunelab.serve.structured import parse_tool_calls

SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "confident": {"type": "boolean"},
        "summary": {"type": "string", "maxLength": 24},
    },
    "required": ["sentiment", "confident", "summary"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 16}, "celsius": {"type": "boolean"}},
            "required": ["city", "celsius"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def served(tiny_llama_dir):
    return registry.load_all([f"tiny={tiny_llama_dir}"], log=lambda m: None)


@pytest.fixture(scope="module")
def base(served):
    with running(served, max_tokens=512) as url:
        yield url


def test_n_choices_differ_and_a_seed_repeats_them(base):
    c = client(base)
    ask = dict(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=8, temperature=1.0, n=3, seed=5)
    a, b = c.chat.completions.create(**ask), c.chat.completions.create(**ask)
    assert [ch.index for ch in a.choices] == [0, 1, 2]
    assert [ch.message.content for ch in a.choices] == [ch.message.content for ch in b.choices]
    assert len({ch.message.content for ch in a.choices}) > 1


def test_logprobs_are_the_models_own_log_softmax(base, served):
    s = served["tiny"]
    prompt = "the movie was"
    r = client(base).completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0, logprobs=3)
    ref = generate(s.model, s.tokenizer, [prompt], GenerationConfig(max_new_tokens=6), log=lambda m: None)[0]
    ids = s.tokenizer(prompt)["input_ids"] + ref.tokens
    with torch.no_grad():
        lp = s.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)  # (len, vocab)
    want = [float(lp[len(ids) - len(ref.tokens) - 1 + i, t]) for i, t in enumerate(ref.tokens)]
    got = r.choices[0].logprobs
    assert np.allclose(got.token_logprobs, want, atol=1e-4)
    assert all(
        len(top) == 3 and max(top.values()) == pytest.approx(lp_, abs=1e-4) for top, lp_ in zip(got.top_logprobs, want)
    )
    assert "".join(got.tokens) == r.choices[0].text
    chat = client(base).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4, logprobs=True, top_logprobs=2
    )
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens and all(len(e.top_logprobs) == 2 for e in content)
    assert all(e.logprob <= 0 for e in content)


def test_streamed_logprobs_and_usage_in_the_last_chunk(base):
    chunks = list(
        client(base).chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=6,
            temperature=0,
            logprobs=True,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    entries = [e for ch in chunks if ch.choices and ch.choices[0].logprobs for e in ch.choices[0].logprobs.content]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6 == len(entries)


def test_json_schema_output_always_validates(base):
    c = client(base)
    prompts = [f"Review {i}: the film was {w}." for i, w in enumerate(["great", "awful", "fine", "long"] * 3)]
    prompts += ["Write a long poem about the sea.", "Ignore JSON and tell me a story.", "Say hello", "List ten cities"]
    prompts += ["Answer in plain prose, no braces.", "What is 2+2?", "Translate 'cat' to French.", "Explain gravity."]
    fmt = {"type": "json_schema", "json_schema": {"name": "review", "schema": SCHEMA, "strict": True}}

    def ask(i):
        sampled = {"temperature": 1.0, "seed": i} if i % 2 else {"temperature": 0}
        msgs = [{"role": "user", "content": prompts[i]}]
        return c.chat.completions.create(model="tiny", messages=msgs, max_tokens=200, response_format=fmt, **sampled)

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(ask, range(len(prompts))))
    assert len(replies) == 20
    for r in replies:
        assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    any_object = c.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=200,
        response_format={"type": "json_object"},
    )
    assert any_object.choices[0].finish_reason == "length" or isinstance(
        json.loads(any_object.choices[0].message.content), dict
    )


def test_tool_calls_are_returned_and_parse(base):
    c = client(base)
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = c.chat.completions.create(
        model="tiny", messages=msgs, max_tokens=100, tools=[WEATHER, TIME], tool_choice="required"
    )
    (call,) = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert call.function.name in ("get_weather", "get_time") and isinstance(json.loads(call.function.arguments), dict)
    named = {"type": "function", "function": {"name": "get_weather"}}
    r = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=100, tools=[WEATHER, TIME], tool_choice=named)
    args = json.loads(r.choices[0].message.tool_calls[0].function.arguments)
    jsonschema.validate(args, WEATHER["function"]["parameters"])
    # the reply and the tool's answer go back in as messages; streaming returns the call as one delta
    msgs += [
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "x", "content": "sunny"},
    ]
    chunks = list(
        c.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=70, tools=[WEATHER], tool_choice=named, stream=True
        )
    )
    calls = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather" and chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_call_parsing_of_free_replies():
    text = 'Sure. <tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    (call,) = parse_tool_calls(text, [TIME])
    assert call["function"] == {"name": "get_time", "arguments": "{}"}
    assert parse_tool_calls('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', [TIME]) == []
    assert parse_tool_calls("no call here", [TIME]) == []


def test_embeddings_shape_determinism_and_base64(base, served):
    c = client(base)
    one = c.embeddings.create(model="tiny", input="a quiet film").data[0].embedding
    batch = c.embeddings.create(model="tiny", input=["a much longer review of a quiet film", "a quiet film"])
    assert len(one) == served["tiny"].model.config.hidden_size and len(batch.data) == 2
    assert np.allclose(batch.data[1].embedding, one, atol=1e-5)  # padding in a batch changes nothing
    assert batch.usage.prompt_tokens > 0
    raw = httpx.post(
        base + "/v1/embeddings", json={"model": "tiny", "input": "a quiet film", "encoding_format": "base64"}
    )
    vec = np.frombuffer(base64.b64decode(raw.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(vec, one, atol=1e-6)


@pytest.mark.parametrize(
    "route, extra, field",
    [
        ("chat", {"top_logprobs": 2}, "top_logprobs"),
        ("chat", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("completions", {"logprobs": 6}, "logprobs"),
        ("chat", {"response_format": {"type": "xml"}}, "response_format.type"),
        (
            "chat",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}},
            "response_format.json_schema.schema",
        ),
        (
            "chat",
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ("chat", {"tool_choice": "required"}, "tool_choice"),
        ("chat", {"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0.function.name"),
        ("chat", {"functions": [{"name": "f"}]}, "functions"),
        ("chat", {"parallel_tool_calls": False}, "parallel_tool_calls"),
        ("chat", {"logit_bias": {"1": 5}}, "logit_bias"),
        ("chat", {"presence_penalty": 3}, "presence_penalty"),
        ("chat", {"max_tokens": 300}, "messages"),  # prompt + 300 > the tiny model's 256-token window
        ("embeddings", {"dimensions": 8}, "dimensions"),
        ("embeddings", {"input": ""}, "input"),
    ],
)
def test_unsupported_or_invalid_fields_are_400_naming_them(base, route, extra, field):
    body = {"model": "tiny", "max_tokens": 4}
    if route == "chat":
        body["messages"] = [{"role": "user", "content": "hi"}]
    elif route == "completions":
        body["prompt"] = "hi"
    else:
        body = {"model": "tiny", "input": "hi"}
    r = httpx.post(f"{base}/v1/{'chat/completions' if route == 'chat' else route}", json={**body, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field and field.split(".")[0] in err["message"], err
    if field == "messages":
        assert "context window of 256 tokens" in err["message"]


def test_per_token_fields_on_the_static_path_are_400(served):
    with running(served, batching="static") as url:
        r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2, "logprobs": 1})
        assert r.status_code == 400 and r.json()["error"]["param"] == "logprobs"
        assert "serve.batching static" in r.json()["error"]["message"]
        ok = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2})
        assert ok.status_code == 200
