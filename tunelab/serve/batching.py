"""The worker thread that owns the models and runs every request.

Handlers ``submit`` jobs into a bounded queue (full -> ``QueueFull``, the app answers 429). With
``serve.batching: continuous`` (the default) generation jobs join the running batch of their model at the
next decode step, up to ``max_batch_size`` running sequences (continuous.py); other jobs (``/v1/predict``,
llama.cpp engines, models the continuous scheduler cannot run) run between two steps.

The static path (``serve.batching: static``, and those other generation jobs): the worker takes the oldest
job plus every queued job with the same model and sampling settings, up to ``max_batch_size`` sequences,
waiting at most ``max_wait_ms`` for the batch to fill, and decodes them in ONE ``generate`` call (left padding). ``RowMonitor`` - a transformers StoppingCriteria called after
every step - ends each row on its own: its EOS, its own max_tokens, its own stop strings, or its
cancel flag (client gone, timeout); it also streams each row's new text to its request.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from tunelab.generation.config import GenerationConfig
from tunelab.generation.decode import _left_pad, eos_ids, finish, hf_generate_kwargs


class QueueFull(Exception):
    pass


@dataclass
class Job:
    """One request. ``emit(kind, payload)`` is called from the worker thread:
    ("delta", (index, text, logprob entries or None)) while streaming, then ("done", result) or ("error", message)."""

    served: Any  # registry.Served
    emit: Callable[[str, Any], None]
    cfg: GenerationConfig | None = None  # sampling settings (max_new_tokens/stop are per row, below)
    prompt_ids: list[int] = field(default_factory=list)
    max_tokens: int = 16
    stop: list[str] = field(default_factory=list)
    n: int = 1
    stream: bool = False
    # a non-generation job (predict, embeddings): ``fn(inputs) -> one output per input``; queued jobs with the same
    # ``fn_key`` run as ONE call on their concatenated inputs (batched across requests)
    fn: Callable[[list], list] | None = None
    inputs: list = field(default_factory=list)
    fn_key: tuple = ()
    cancel: threading.Event = field(default_factory=threading.Event)
    # continuous batching: per-request settings (sampling.Sampling), logprobs (None = off, k = top-k alternatives),
    # the seed, arrival time (time-to-first-token), the context window, and a factory of a constraint per choice
    sampling: Any = None
    logprobs: int | None = None
    seed: int | None = None
    arrived: float = field(default_factory=time.monotonic)
    window: int = 1 << 30
    constraint: Callable[[], Any] | None = None

    @property
    def key(self) -> tuple:
        """Jobs with equal keys may share a generate call."""
        if self.fn is not None:
            return ("fn", *self.fn_key) if self.fn_key else ("fn", id(self))
        c = self.cfg
        return (
            self.served.name,
            c.do_sample,
            c.temperature,
            c.top_k,
            c.top_p,
            c.repetition_penalty,
            c.no_repeat_ngram_size,
            c.seed if c.seed is None else ("seed", id(self)),
        )


class RowMonitor(StoppingCriteria):
    """Per-row stopping and streaming for one batch; rows are (job, choice index) pairs."""

    def __init__(self, rows: list[tuple[Job, int]], tokenizer, lock, stop_ids: set[int]):
        self.rows, self.tokenizer, self.lock, self.stop_ids = rows, tokenizer, lock, stop_ids
        self.done = [False] * len(rows)
        self.new: list[list[int]] = [[] for _ in rows]
        self.sent = [""] * len(rows)
        self.keep = [max((len(s) for s in job.stop), default=1) - 1 for job, _ in rows]

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        last = input_ids[:, -1].tolist()  # (batch,)
        for r, (job, idx) in enumerate(self.rows):
            if self.done[r]:
                continue
            tok = last[r]
            self.new[r].append(tok)
            eos = tok in self.stop_ids
            text = None
            if job.stream or job.stop:
                ids = self.new[r][:-1] if eos else self.new[r]
                if not job.stream:  # a stop string of L characters spans at most L (non-empty) tokens
                    ids = ids[-(self.keep[r] + 3) :]
                with self.lock:
                    text = self.tokenizer.decode(ids, skip_special_tokens=True)
            hit = text is not None and any(s in text for s in job.stop)
            if eos or hit or len(self.new[r]) >= job.max_tokens or job.cancel.is_set():
                self.done[r] = True
            elif job.stream:
                self._send(r, job, idx, text)
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    def _send(self, r: int, job: Job, idx: int, text: str) -> None:
        """Send the new text that can no longer turn into a stop string or an incomplete character."""
        safe = text[: len(text) - self.keep[r]] if self.keep[r] else text
        safe = safe.rstrip("\ufffd")
        if len(safe) > len(self.sent[r]) and safe.startswith(self.sent[r]):
            job.emit("delta", (idx, safe[len(self.sent[r]) :], None))
            self.sent[r] = safe

    def flush(self, r: int, final_text: str) -> None:
        job, idx = self.rows[r]
        if job.stream and len(final_text) > len(self.sent[r]):
            job.emit("delta", (idx, final_text[len(self.sent[r]) :], None))


class Worker:
    """The single thread that owns the models; see the module docstring."""

    def __init__(
        self,
        max_batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        metrics,
        log: Callable[[str], None],
        continuous: bool = True,
        max_inputs: int = 256,
        prefix_cache: bool = False,
    ):
        from tunelab.serve.continuous import Scheduler

        self.max_batch_size, self.max_wait, self.max_inputs = max_batch_size, max_wait_ms / 1000, max_inputs
        self.queue_size, self.metrics, self.log = queue_size, metrics, log
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self.scheduler = Scheduler(metrics, log, prefix_cache) if continuous else None
        target = self._loop_continuous if continuous else self._loop
        self._thread = threading.Thread(target=target, name="tunelab-serve-worker", daemon=True)

    def running(self) -> int:
        """Sequences in the running batches (continuous batching)."""
        return self.scheduler.rows() if self.scheduler is not None else 0

    def start(self) -> "Worker":
        self._thread.start()
        return self

    def depth(self) -> int:
        return len(self._queue)

    def submit(self, job: Job) -> None:
        with self._cv:
            if len(self._queue) >= self.queue_size:
                raise QueueFull
            self._queue.append(job)
            self._cv.notify()

    def close(self, timeout: float = 30.0) -> None:
        with self._cv:
            self._closing = True
            for job in self._queue:
                job.cancel.set()
            self._cv.notify_all()
        self._thread.join(timeout)

    def _loop_continuous(self) -> None:
        from tunelab.serve.continuous import accepts

        sched = self.scheduler
        while True:
            join, other = [], None
            with self._cv:
                while not self._queue and not sched.rows() and not self._closing:
                    self._cv.wait(0.5)
                if self._closing:
                    sched.cancel_all()
                    return
                rows = sched.rows()
                while self._queue:
                    job = self._queue[0]
                    if job.cancel.is_set():
                        self._queue.popleft()
                    elif job.fn is not None or not accepts(job):
                        if not join:
                            other = self._group(self._queue.popleft())
                        break
                    elif rows + job.n <= self.max_batch_size or not rows:
                        join.append(self._queue.popleft())
                        rows += job.n
                    else:
                        break
            if other is not None:
                self._run(other)
            if join:
                try:
                    sched.admit(join)
                except Exception as exc:  # noqa: BLE001 - answer the jobs, keep serving
                    self.log("serve: worker error:\n" + traceback.format_exc())
                    for job in join:
                        sched.results.pop(id(job), None)
                        job.emit("error", f"{type(exc).__name__}: {exc}")
            if sched.rows():
                try:
                    sched.step()
                except Exception as exc:  # noqa: BLE001
                    self.log("serve: worker error:\n" + traceback.format_exc())
                    sched.fail(f"{type(exc).__name__}: {exc}")

    def _group(self, first: Job) -> list[Job]:
        """``first`` and the queued jobs that may share its static batch (no waiting); call with the lock held."""
        batch, rows = [first], len(first.inputs) if first.fn is not None else first.n
        limit = self.max_inputs if first.fn is not None else self.max_batch_size
        for job in list(self._queue):
            size = len(job.inputs) if job.fn is not None else job.n
            if job.key == first.key and rows + size <= limit and not job.cancel.is_set():
                self._queue.remove(job)
                batch.append(job)
                rows += size
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._run(batch)

    def _run(self, batch: list[Job]) -> None:
        """One static batch: a predict job, an engine's batch, or one ``generate`` call."""
        try:
            with batch[0].served.active():  # the request's adapter, or the plain base of shared adapters
                if batch[0].fn is not None:
                    self._run_fn(batch)
                elif batch[0].served.engine is not None:
                    # a non-transformers engine (llama.cpp) decodes the batch itself
                    batch[0].served.engine.generate(batch, self.metrics)
                else:
                    self._generate(batch)
        except Exception as exc:  # a bug or a model failure: answer every job of the batch, keep serving
            self.log("serve: worker error:\n" + traceback.format_exc())
            for job in batch:
                job.emit("error", f"{type(exc).__name__}: {exc}")

    def _run_fn(self, batch: list[Job]) -> None:
        """Jobs that share a ``fn``: one call on all their inputs, then each its own slice."""
        inputs = [x for job in batch for x in job.inputs]
        start = time.perf_counter()
        outputs = batch[0].fn(inputs)
        self.metrics.observe("tunelab_pooled_requests", len(batch), buckets=_batch_buckets())
        self.metrics.observe("tunelab_batch_seconds", time.perf_counter() - start)
        at = 0
        for job in batch:
            job.emit("done", outputs[at : at + len(job.inputs)])
            at += len(job.inputs)

    def _take(self) -> list[Job] | None:
        with self._cv:
            while True:
                while not self._queue and not self._closing:
                    self._cv.wait(0.5)
                if self._closing:
                    return None
                first = self._queue.popleft()
                if not first.cancel.is_set():
                    break
            if first.fn is not None:
                return self._group(first)
            batch, rows = [first], first.n
            deadline = time.monotonic() + self.max_wait
            while rows < self.max_batch_size and not self._closing:
                for job in list(self._queue):
                    if job.key == first.key and rows + job.n <= self.max_batch_size and not job.cancel.is_set():
                        self._queue.remove(job)
                        batch.append(job)
                        rows += job.n
                left = deadline - time.monotonic()
                if rows >= self.max_batch_size or left <= 0:
                    break
                self._cv.wait(left)
            return batch

    @torch.no_grad()
    def _generate(self, batch: list[Job]) -> None:
        served = batch[0].served
        model, tok = served.model, served.tokenizer
        rows = [(job, i) for job in batch for i in range(job.n)]
        cfg = batch[0].cfg.model_copy(
            update={"max_new_tokens": max(j.max_tokens for j in batch), "stop": [], "num_beams": 1}
        )
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        device = next(model.parameters()).device
        ids, mask = _left_pad([job.prompt_ids for job, _ in rows], tok.pad_token_id, device)  # (rows, width)
        stop_ids = set(eos_ids(model, tok))
        monitor = RowMonitor(rows, tok, served.lock, stop_ids)
        start = time.perf_counter()
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            stopping_criteria=StoppingCriteriaList([monitor]),
            **hf_generate_kwargs(model, tok, cfg),
        )
        self.metrics.observe("tunelab_batch_size", len(rows), buckets=_batch_buckets())
        self.metrics.observe("tunelab_batch_seconds", time.perf_counter() - start)
        results: dict[int, list] = {id(job): [None] * job.n for job in batch}
        for r, (job, idx) in enumerate(rows):
            new = out[r, ids.shape[1] :].tolist()[: job.max_tokens]
            with served.lock:
                o = finish(tok, new, stop_ids, job.stop)
            monitor.flush(r, o.text)
            results[id(job)][idx] = o
            self.metrics.inc("tunelab_generated_tokens_total", len(o.tokens), model=served.name)
        for job in batch:
            if job.cancel.is_set():
                self.metrics.inc("tunelab_cancelled_total", reason="client_gone_or_timeout")
            job.emit("done", results[id(job)])


def _batch_buckets() -> tuple:
    from tunelab.serve.metrics import BATCH_BUCKETS

    return BATCH_BUCKETS
