"""Routes of the OpenAI-compatible server, and the `tunelab serve` command (imported only by it: FastAPI is heavy).

Handlers validate, tokenize and enqueue; the batching worker (batching.py) owns the models and
answers through an asyncio queue per request, so the event loop never runs a model.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import sys
import time
import uuid
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse

from tunelab.errors import ConfigError
from tunelab.generation.config import decoding_update
from tunelab.serve import openai_format as fmt
from tunelab.serve.batching import Job, QueueFull, Worker
from tunelab.serve.config import ServeConfig
from tunelab.serve.guard import Guard
from tunelab.serve.metrics import Metrics
from tunelab.serve.schemas import APIError, ChatRequest, CompletionRequest, PredictRequest, validation_error


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class State:
    """What the routes share: the served models, limits, the worker and the metrics."""

    def __init__(self, served: dict, cfg: ServeConfig, log: Callable[[str], None]):
        self.served, self.cfg, self.log = served, cfg, log
        self.metrics = Metrics(queue_depth=lambda: self.worker.depth())
        self.worker = Worker(cfg.max_batch_size, cfg.max_wait_ms, cfg.queue_size, self.metrics, log)

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


def build_app(served: dict, cfg: ServeConfig, api_keys: list[str] | None = None, log: Callable[[str], None] = _stderr):
    """The ASGI app (FastAPI behind the Guard middleware); the worker starts and stops with the app."""
    from contextlib import asynccontextmanager

    state = State(served, cfg, log)

    @asynccontextmanager
    async def lifespan(_app):
        from tunelab import hardware

        hardware.use_threads(cfg.threads)  # process-wide: the worker thread runs the models with it
        state.worker.start()
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
        return {"status": "ok", "models": list(served), "queue_depth": state.worker.depth()}

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
        return await _predict(state, await _parse(request, PredictRequest))

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


def _encode(state: State, served, prompt, max_tokens: int, cfg, field: str) -> list[int]:
    from tunelab.generation.decode import context_window, encode_prompt

    with served.lock:
        ids, _ = encode_prompt(served.tokenizer, prompt, 10**9, served.template, log=lambda m: None)
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
    prompts = [body.chat()] if chat else body.prompt
    field = "messages" if chat else "prompt"
    ids = [await run_in_threadpool(_encode, state, served, p, max_tokens, cfg, field) for p in prompts]
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    jobs = [
        Job(served, _emitter(loop, events, j), cfg, prompt_ids, max_tokens, list(cfg.stop), body.n, body.stream)
        for j, prompt_ids in enumerate(ids)
    ]
    state.submit(jobs)
    state.metrics.inc("tunelab_prompt_tokens_total", sum(len(i) * body.n for i in ids), model=served.name)
    reply = fmt.Reply(
        ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex, served.name, chat, body.n, sum(map(len, ids)) * body.n
    )
    deadline = arrived + state.cfg.timeout_s
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = fmt.sse(reply, jobs, events, deadline, request, include_usage)
        return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    outputs = await _collect(jobs, events, deadline)
    return JSONResponse(reply.full(outputs))


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


async def _predict(state: State, body):
    """Any task's predictions through its protocol: ``parse_inputs`` on the request's texts, then ``predict``."""
    from tunelab.errors import TunelabError

    arrived = time.monotonic()
    served = state.lookup(body.model, generates=None)
    if served.engine is not None:  # Task.predict runs the run's torch model; an engine only decodes completions
        raise APIError(
            400,
            f"model '{served.name}' runs on the {served.run.backend} back-end, which answers /v1/completions and "
            "/v1/chat/completions; serve the run with --backend torch for /v1/predict",
            param="model",
            code="wrong_endpoint",
        )
    texts = [body.input] if isinstance(body.input, str) else body.input
    pairs = (
        ([body.text_pair] if isinstance(body.text_pair, str) else body.text_pair)
        if body.text_pair is not None
        else [None] * len(texts)
    )
    if len(texts) > state.cfg.max_predict_inputs:
        raise APIError(
            400,
            f"input: {len(texts)} texts is above this server's cap of {state.cfg.max_predict_inputs}",
            param="input",
            code="invalid_value",
        )
    lines = [json.dumps({"text": t, **({"text_pair": p} if p is not None else {})}) for t, p in zip(texts, pairs)]
    try:
        inputs = served.task.parse_inputs(lines, "input")
    except TunelabError as exc:
        raise APIError(400, str(exc), param="input", code="invalid_value") from None
    run = lambda: served.task.predict(served.run, inputs)  # noqa: E731
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    job = Job(served, _emitter(loop, events, 0), fn=run)
    state.submit([job])
    (outputs,) = await _collect([job], events, arrived + state.cfg.timeout_s)
    for o in outputs:  # class predictions by label, for alert rules on the label mix (e.g. share of negative news)
        if isinstance(o.get("label"), str):
            state.metrics.inc("tunelab_predictions_total", model=served.name, label=o["label"])
    data = [{"index": i, "input": t, **o} for i, (t, o) in enumerate(zip(texts, outputs))]
    return JSONResponse({"object": "list", "model": served.name, "data": data})


# ---------------------------------------------------------------- the command


def api_keys(given: list[str] | None) -> list[str]:
    """Keys from --api-key (repeatable) and the comma-separated TUNELAB_API_KEYS variable."""
    keys = list(given or []) + [k.strip() for k in os.environ.get("TUNELAB_API_KEYS", "").split(",")]
    return [k for k in dict.fromkeys(keys) if k]


def run(args) -> int:
    """`tunelab serve RUN_DIR|MODEL ...`: load, then serve until interrupted."""
    import uvicorn

    from tunelab.serve import config as serve_config
    from tunelab.serve import registry

    flags = {k: getattr(args, k, None) for k in ServeConfig.model_fields}
    cfg = serve_config.load(args.config, flags)
    keys = api_keys(args.api_key)
    registry.parse_items(args.targets)  # bad names fail before anything loads
    sock = listen(cfg.host, cfg.port)  # a port in use fails before the models load, not after
    port = sock.getsockname()[1]
    served = registry.load_all(args.targets, _stderr, cfg.backend)
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not keys:
        _stderr(f"serve: warning: listening on {cfg.host} without API keys; anyone who can reach it can use it")
    _stderr(
        f"serve: {len(served)} model(s) on http://{cfg.host}:{port}/v1 ({', '.join(served)})"
        + ("; API key required" if keys else "")
    )
    config = uvicorn.Config(
        build_app(served, cfg, keys), host=cfg.host, port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def listen(host: str, port: int) -> socket.socket:
    """Bind the server's socket now (uvicorn serves on it later); ConfigError if the address is taken or invalid."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"serve: --host {host}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: rebinding after a restart works
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"serve: port {port} on {host} is already in use; choose another with --port "
                "(--port 0 picks a free one)"
            ) from None
        raise ConfigError(f"serve: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock
