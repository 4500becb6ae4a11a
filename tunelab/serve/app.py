"""Routes of the OpenAI-compatible server, and the `tunelab serve` command (imported only by it: FastAPI is heavy).

Handlers validate, tokenize and enqueue; the batching worker (batching.py) owns the models and
answers through an asyncio queue per request, so the event loop never runs a model.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse

from tunelab.generation.config import decoding_update
from tunelab.generation.decode import context_window
from tunelab.serve import openai_format as fmt
from tunelab.serve import structured
from tunelab.serve.batching import Job, QueueFull, Worker
from tunelab.serve.config import ServeConfig
from tunelab.serve.guard import Guard
from tunelab.serve.metrics import Metrics
from tunelab.serve.sampling import Sampling
from tunelab.serve.schemas import (
    APIError,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    PredictRequest,
    validation_error,
)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class State:
    """What the routes share: the served models, limits, the worker and the metrics."""

    def __init__(self, served: dict, cfg: ServeConfig, log: Callable[[str], None]):
        self.served, self.cfg, self.log = served, cfg, log
        self.metrics = Metrics(queue_depth=lambda: self.worker.depth(), running=lambda: self.worker.running())
        self.worker = Worker(
            cfg.max_batch_size,
            cfg.max_wait_ms,
            cfg.queue_size,
            self.metrics,
            log,
            cfg.batching == "continuous",
            cfg.max_predict_inputs,
            cfg.prefix_cache,
        )

    def lookup(self, name: str, generates: bool | None):
        """The served model ``name``; ``generates``: the endpoint needs a generating task (None: any task)."""
        served = self.served.get(name)
        if served is None:
            raise APIError(
                404,
                f"The model '{name}' does not exist; GET /v1/models lists the served models",
                param="model",
                code="model_not_found",
            )
        if generates is not None and served.generates != generates:
            use = "/v1/completions or /v1/chat/completions" if served.generates else "/v1/predict"
            raise APIError(
                400, f"model '{name}' is a {served.task.name} model; use {use}", param="model", code="wrong_endpoint"
            )
        return served

    def submit(self, jobs: list[Job]) -> None:
        for i, job in enumerate(jobs):
            try:
                self.worker.submit(job)
            except QueueFull:
                for j in jobs[:i]:
                    j.cancel.set()
                raise APIError(
                    429,
                    f"the server is busy ({self.cfg.queue_size} requests queued); retry later",
                    code="queue_full",
                    headers={"Retry-After": str(self.cfg.retry_after_s)},
                ) from None


def build_app(
    served: dict,
    cfg: ServeConfig,
    api_keys: list[str] | None = None,
    log: Callable[[str], None] = _stderr,
    metrics_dir: str | None = None,
):
    """The ASGI app (FastAPI behind the Guard middleware); the worker starts and stops with the app.
    ``metrics_dir``: the folder where the processes of `serve --workers N` share their metrics."""
    from contextlib import asynccontextmanager

    state = State(served, cfg, log)

    @asynccontextmanager
    async def lifespan(_app):
        from tunelab import hardware

        hardware.use_threads(cfg.threads)  # process-wide: the worker thread runs the models with it
        state.worker.start()
        if metrics_dir is not None:
            state.metrics.share(Path(metrics_dir))
        yield
        state.worker.close()

    app = FastAPI(title="tunelab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.tunelab = state

    @app.exception_handler(APIError)
    async def _api_error(_req, exc: APIError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(_req, exc: HTTPException):
        return JSONResponse(
            APIError(exc.status_code, str(exc.detail), code="not_found").body(), status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def _bug(_req, exc: Exception):
        log(f"serve: internal error: {type(exc).__name__}: {exc}")
        return JSONResponse(APIError(500, "internal server error").body(), status_code=500)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(served), "queue_depth": state.worker.depth(), "pid": os.getpid()}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [fmt.model_card(s) for s in served.values()]}

    @app.get("/v1/models/{name}")
    async def model(name: str):
        if name not in served:
            raise APIError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
        return fmt.model_card(served[name])

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _generate(state, request, await _parse(request, CompletionRequest), chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _generate(state, request, await _parse(request, ChatRequest), chat=True)

    @app.post("/v1/predict")
    async def predict(request: Request):
        from tunelab.serve import pooled

        return await pooled.predict(state, await _parse(request, PredictRequest))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        from tunelab.serve import pooled

        return await pooled.embeddings(state, await _parse(request, EmbeddingRequest))

    return Guard(app, state.metrics, api_keys or [], cfg.max_body_bytes)


async def _parse(request, model_cls):
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _decoding(state: State, served, body):
    """The run's generation section with the request's fields applied; returns (cfg, max_tokens)."""
    cap = state.cfg.max_tokens
    max_tokens = body.max_tokens or getattr(body, "max_completion_tokens", None) or min(served.gen.max_new_tokens, cap)
    if max_tokens > cap:
        field = "max_tokens" if body.max_tokens else "max_completion_tokens"
        raise APIError(
            400, f"{field}: {max_tokens} is above this server's cap of {cap}", param=field, code="invalid_value"
        )
    if body.n > state.cfg.max_n:
        raise APIError(
            400, f"n: {body.n} is above this server's cap of {state.cfg.max_n}", param="n", code="invalid_value"
        )
    update = {"num_beams": 1, "stop": body.stop or list(served.gen.stop)}
    # the rule `generate` and `chat` use too: temperature 0 = greedy, > 0 samples; omitted = the run's own setting
    update.update(
        decoding_update(
            {name: getattr(body, name) for name in ("temperature", "top_p", "top_k", "repetition_penalty", "seed")}
        )
    )
    return served.gen.model_copy(update=update), max_tokens


def _sampling(cfg, body) -> Sampling:
    """One request's per-row settings for the continuous scheduler (top_k 0 and top_p 1 disable them)."""
    return Sampling(
        do_sample=cfg.do_sample,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        repetition_penalty=cfg.repetition_penalty,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
    )


def _encode(state: State, served, prompt, max_tokens: int, cfg, field: str, tools=None) -> list[int]:
    from tunelab.generation.decode import encode_prompt

    with served.lock:
        ids, _ = encode_prompt(served.tokenizer, prompt, 10**9, served.template, log=lambda m: None, tools=tools)
    if not ids:
        raise APIError(400, f"{field}: empty; give some text to continue", param=field, code="invalid_value")
    window = context_window(served.model, cfg)
    if len(ids) > state.cfg.max_prompt_tokens:
        raise APIError(
            400,
            f"{field}: {len(ids)} tokens is above this server's cap of {state.cfg.max_prompt_tokens}",
            param=field,
            code="context_length_exceeded",
        )
    if len(ids) + max_tokens > window:
        raise APIError(
            400,
            f"{field}: {len(ids)} prompt tokens + max_tokens {max_tokens} exceed the model's context "
            f"window of {window} tokens",
            param=field,
            code="context_length_exceeded",
        )
    return ids


async def _generate(state: State, request, body, chat: bool):
    arrived = time.monotonic()
    served = state.lookup(body.model, generates=True)
    cfg, max_tokens = _decoding(state, served, body)
    _check_path(state, served, cfg, body, chat)
    tools = body.tool_dicts() if chat else []
    prompts, template_tools = [body.chat()] if chat else body.prompt, None
    if tools:
        prompts, template_tools = structured.offer_tools(prompts[0], tools, served.template)
    field = "messages" if chat else "prompt"
    ids = [await run_in_threadpool(_encode, state, served, p, max_tokens, cfg, field, template_tools) for p in prompts]
    constraint = await run_in_threadpool(_constraint, served, body, tools) if chat else None
    top = (body.top_logprobs or 0 if body.logprobs else None) if chat else body.logprobs
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    window = context_window(served.model, cfg)
    jobs = [
        Job(
            served,
            _emitter(loop, events, j),
            cfg,
            prompt_ids,
            max_tokens,
            list(cfg.stop),
            body.n,
            body.stream and not tools,  # a reply that may be a tool call is parsed whole, then sent
            sampling=_sampling(cfg, body),
            logprobs=top,
            seed=cfg.seed,
            arrived=arrived,
            window=window,
            constraint=constraint,
        )
        for j, prompt_ids in enumerate(ids)
    ]
    state.submit(jobs)
    state.metrics.inc("tunelab_prompt_tokens_total", sum(len(i) * body.n for i in ids), model=served.name)
    reply = fmt.Reply(
        ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
        served.name,
        chat,
        body.n,
        sum(map(len, ids)) * body.n,
        logprobs=top is not None,
        tools=tools,
    )
    deadline = arrived + state.cfg.timeout_s
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = fmt.sse(reply, jobs, events, deadline, request, include_usage)
        return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    outputs = await _collect(jobs, events, deadline)
    return JSONResponse(reply.full(outputs))


def _per_token_fields(body, chat: bool) -> list[str]:
    """The request's fields that only the continuous scheduler implements (it decides each token itself)."""
    used = [name for name in ("presence_penalty", "frequency_penalty") if getattr(body, name)]
    if body.logprobs is not None and body.logprobs is not False:
        used.append("logprobs")
    if chat and body.response_format is not None and body.response_format.type != "text":
        used.append("response_format")
    if chat and body.tool_dicts():
        used.append("tools")
    return used


def _check_path(state: State, served, cfg, body, chat: bool) -> None:
    """400 naming the first field the static path cannot honour, when this request would run there."""
    from tunelab.serve.continuous import supported

    used = _per_token_fields(body, chat)
    if not used or (state.cfg.batching == "continuous" and supported(served) and cfg.no_repeat_ngram_size == 0):
        return
    why = (
        "the server runs with serve.batching static"
        if state.cfg.batching == "static"
        else f"model '{served.name}' is decoded by generate() (a non-torch back-end, an encoder-decoder or "
        "prompt-learning model, or no_repeat_ngram_size in its generation section)"
    )
    raise APIError(
        400,
        f"{used[0]}: needs continuous batching, but {why}",
        param=used[0],
        code="unsupported_parameter",
    )


def _constraint(served, body, tools: list[dict]):
    """A factory of one JSON constraint per choice, or None (free text)."""
    from tunelab.generation.decode import eos_ids

    if tools:
        schema = structured.tool_schema(tools, body.tool_choice)
        constrained = schema is not None
    else:
        fmt_ = body.response_format
        constrained, schema = structured.schema_of(fmt_.model_dump(exclude_none=True) if fmt_ else None)
    if not constrained:
        return None
    table = structured.token_table(served, eos_ids(served.model, served.tokenizer))
    return lambda: structured.JsonConstraint(table, schema)


def _emitter(loop, events: asyncio.Queue, j: int):
    def emit(kind, payload):
        try:
            loop.call_soon_threadsafe(events.put_nowait, (j, kind, payload))
        except RuntimeError:  # the event loop is gone (server shutting down)
            pass

    return emit


async def _collect(jobs: list[Job], events: asyncio.Queue, deadline: float) -> list:
    """Every job's outputs, in job order; 504 (and generation stopped) past the deadline."""
    results: dict[int, list] = {}
    try:
        while len(results) < len(jobs):
            j, kind, payload = await asyncio.wait_for(events.get(), max(deadline - time.monotonic(), 0.001))
            if kind == "error":
                raise APIError(500, f"generation failed: {payload}", code="generation_failed")
            if kind == "done":
                results[j] = payload
    except (asyncio.TimeoutError, TimeoutError):
        raise APIError(
            504, "the request took longer than the server's timeout; generation was stopped", code="timeout"
        ) from None
    finally:
        for job in jobs:
            job.cancel.set()  # no effect on finished jobs; stops unfinished ones at the next token
    return [results[j] for j in range(len(jobs))]
