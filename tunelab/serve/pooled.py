"""Requests pooled across clients: ``/v1/predict`` (any task, through its protocol) and ``/v1/embeddings``.

Each handler validates and tokenizes, then queues ONE worker job whose inputs the worker concatenates with those
of other queued jobs for the same model and endpoint (batching.Worker._group), so concurrent requests share a
forward pass; each request gets its own slice of the outputs back.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from tunelab.serve.app import _collect, _emitter
from tunelab.serve.batching import Job
from tunelab.serve.schemas import APIError


async def predict(state, body):
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
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    job = Job(
        served,
        _emitter(loop, events, 0),
        fn=lambda many: served.task.predict(served.run, many),
        inputs=list(inputs),
        fn_key=(served.name, "predict"),
    )
    state.submit([job])
    (outputs,) = await _collect([job], events, arrived + state.cfg.timeout_s)
    for o in outputs:  # class predictions by label, for alert rules on the label mix (e.g. share of negative news)
        if isinstance(o.get("label"), str):
            state.metrics.inc("tunelab_predictions_total", model=served.name, label=o["label"])
    data = [{"index": i, "input": t, **o} for i, (t, o) in enumerate(zip(texts, outputs))]
    return JSONResponse({"object": "list", "model": served.name, "data": data})


async def embeddings(state, body):
    """Mean-pooled vectors, one per input, computed by the worker (requests pooled into one forward)."""
    from tunelab.serve import embeddings as pooling

    arrived = time.monotonic()
    served = state.lookup(body.model, generates=None)
    if served.engine is not None:
        raise APIError(
            400,
            f"model '{served.name}' runs on the {served.run.backend} back-end; /v1/embeddings needs --backend torch",
            param="model",
            code="wrong_endpoint",
        )
    items = body.items()
    if len(items) > state.cfg.max_predict_inputs:
        raise APIError(
            400,
            f"input: {len(items)} inputs is above this server's cap of {state.cfg.max_predict_inputs}",
            param="input",
            code="invalid_value",
        )
    rows = await run_in_threadpool(_embedding_ids, served, items)
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    pad = served.tokenizer.pad_token_id if served.tokenizer.pad_token_id is not None else 0
    job = Job(
        served,
        _emitter(loop, events, 0),
        fn=lambda many: pooling.embed(served.model, pad, many),
        inputs=rows,
        fn_key=(served.name, "embed"),
    )
    state.submit([job])
    (vectors,) = await _collect([job], events, arrived + state.cfg.timeout_s)
    used = sum(map(len, rows))
    data = [
        {"object": "embedding", "index": i, "embedding": pooling.encode(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": used, "total_tokens": used}
    return JSONResponse({"object": "list", "data": data, "model": served.name, "usage": usage})


def _embedding_ids(served, items: list) -> list[list[int]]:
    """Token ids of each input (texts are tokenized as the model's tokenizer does, with its special tokens)."""
    limit = getattr(served.model.config, "max_position_embeddings", None) or 10**9
    vocab = len(served.tokenizer)
    rows = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            with served.lock:
                ids = list(served.tokenizer(item)["input_ids"])
        else:
            ids = list(item)
            if any(t < 0 or t >= vocab for t in ids):
                raise APIError(
                    400, f"input[{i}]: token ids must be in [0, {vocab})", param="input", code="invalid_value"
                )
        if len(ids) > limit:
            raise APIError(
                400,
                f"input[{i}]: {len(ids)} tokens exceed the model's context window of {limit} tokens",
                param="input",
                code="context_length_exceeded",
            )
        rows.append(ids)
    return rows
