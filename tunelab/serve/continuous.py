"""Iteration-level (continuous) batching: every running sequence of a model advances by one token per step.

A model's running sequences share one preallocated KV cache with a row (slot) per sequence (slots.py). New
requests are prefilled together (one forward over their left-padded prompts), take their first token from that
forward, and their keys/values are copied into free rows; a finished or cancelled row leaves the batch at once (the
last row moves into its slot). Each row picks its token with its own settings
(sampling.py), its own stop strings, max_tokens, seed and logprobs, so a request decodes the same whichever
requests share its steps. LoRA adapters served on one shared base (and that base served plain) share one running
batch: each row goes through its own adapter in the same forward (peft's ``adapter_names``). Written by hand: transformers' ``generate`` runs one fixed batch to its end, and its
continuous-batching manager (paged attention) takes one generation config for all requests.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from tunelab.generation.decode import Output, _left_pad, eos_ids, finish
from tunelab.generation.greedy import cache_kwarg
from tunelab.serve import sampling
from tunelab.serve.slots import GROW_COLUMNS, SlotCache

TTFT = "tunelab_time_to_first_token_seconds"
ITL = "tunelab_inter_token_latency_seconds"


def accepts(job) -> bool:
    """Whether the scheduler runs this generation job (no n-gram blocking, which only ``generate`` implements)."""
    return supported(job.served) and job.cfg.no_repeat_ngram_size == 0


def supported(served) -> bool:
    """Whether this served model can run here: a torch decoder-only model with plain (non-sliding) KV caches and
    no prompt-learning virtual tokens. Others (llama.cpp engines, seq2seq, prefix tuning) use the static path."""
    if served.engine is not None:
        return False
    model = served.model
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = inner.config
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "sliding_window", None):
        return False
    peft_cfg = getattr(model, "active_peft_config", None)
    return not (peft_cfg is not None and getattr(peft_cfg, "is_prompt_learning", False))


class Row:
    """One sequence: choice ``index`` of ``job``."""

    def __init__(self, job, index: int, stop_ids: set[int]):
        self.job, self.index, self.stop_ids = job, index, stop_ids
        self.new: list[int] = []
        self.generator = None
        if job.seed is not None and job.sampling.do_sample:  # n choices of one seeded request differ, reproducibly
            self.generator = torch.Generator().manual_seed((job.seed + index) % 2**63)
        self.seen = set(job.prompt_ids)
        self.counts: torch.Tensor | None = None  # (vocab,) for presence/frequency penalties
        self.sent = ""
        self.keep = max((len(s) for s in job.stop), default=1) - 1
        self.logprobs: list[dict] = []
        self.unsent: list[dict] = []  # logprob entries not yet streamed
        self.last_time: float | None = None
        self.reason: str | None = None
        self.constraint = job.constraint() if job.constraint is not None else None


class Batch:
    """The running rows of one served model: row k of ``slots`` (its KV cache) is ``rows[k]``; ``tokens`` (n,) are
    the rows' next inputs."""

    def __init__(self, slots: SlotCache):
        self.slots, self.rows = slots, []
        self.tokens = torch.zeros(0, dtype=torch.long, device=slots.lengths.device)

    def join(self, rows: list[Row], layers, mask: torch.Tensor, tokens: list[int]) -> None:
        """Add prefilled rows: ``layers`` their per-layer (keys, values), real where ``mask`` (r, T) is 1."""
        self.slots.join(layers, mask)
        self.rows += rows
        self.tokens = torch.cat([self.tokens, torch.tensor(tokens, dtype=torch.long, device=self.tokens.device)])

    def keep(self, index: list[int]) -> None:
        """Only the rows at ``index`` stay (the others' slots are refilled from the end)."""
        if len(index) == len(self.rows):
            return
        kept = set(index)
        order = self.slots.drop([i for i in range(len(self.rows)) if i not in kept])
        self.rows = [self.rows[i] for i in order]
        self.tokens = self.tokens[torch.tensor(order, dtype=torch.long, device=self.tokens.device)]


def _forward(rows: list[Row], **inputs):
    """One forward of the rows' model: rows of adapters that mix each through their own adapter (peft's
    ``adapter_names``); otherwise the model's adapter selected around it (``Served.active``)."""
    served = rows[0].job.served
    if served.mixes:
        return served.model(**inputs, adapter_names=[r.job.served.adapter_label for r in rows])
    with served.active():
        return served.model(**inputs)


def _layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]  # each (rows, kv_heads, T, head_dim)


def _cache(layers):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers)


class Scheduler:
    """The running batches (one per served model) of the worker thread; see the module docstring."""

    def __init__(self, metrics, log: Callable[[str], None], prefix_cache: bool = False):
        self.metrics, self.log, self.prefix_cache = metrics, log, prefix_cache
        self.batches: dict[str, Batch] = {}
        self.results: dict[int, list] = {}
        self.prefixes: dict[str, tuple[list[int], list]] = {}  # model -> (prompt ids, per-layer (k, v) of 1 row)

    def _prefill(self, rows: list[Row]):
        """One forward over the new rows' prompts: (cache, mask (rows, T), positions (rows, T), last logits (rows,
        vocab)).

        With the prefix cache, the tokens every prompt shares with the model's last prefilled prompt (a chat
        template's system prompt, say) are not computed again: their keys and values are copied from that prompt
        (causal attention: a prefix's cache does not depend on what follows it) and only the rest is run. Rows of
        different adapters (a mixed batch) neither use nor update it: a prefix's cache depends on the adapter."""
        served = rows[0].job.served
        prompts = [r.job.prompt_ids for r in rows]
        device = next(served.model.parameters()).device
        pad = served.tokenizer.pad_token_id
        names = {r.job.served.name for r in rows}
        key = names.pop() if len(names) == 1 else None
        shared = self._shared_prefix(key, prompts) if key is not None else 0
        if shared:
            _, kv = self.prefixes[key]
            layers = [
                tuple(x[:, :, :shared].expand(len(prompts), -1, -1, -1).contiguous() for x in pair) for pair in kv
            ]
            cache = _cache(layers)
            ids, tail = _left_pad([p[shared:] for p in prompts], pad, device)
            mask = torch.cat([tail.new_ones(len(prompts), shared), tail], dim=1)  # (rows, shared + width)
            self.metrics.inc("tunelab_prefix_cache_tokens_total", shared * len(prompts), model=served.name)
        else:
            cache = _cache(None)
            ids, mask = _left_pad(prompts, pad, device)
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)  # padding: each row counts its own tokens
        out = _forward(
            rows,
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions[:, shared:],
            use_cache=True,
            cache_position=torch.arange(shared, mask.shape[1], device=device),
            logits_to_keep=1,
            **cache_kwarg(served.model, cache),
        )
        if self.prefix_cache and key is not None:  # remember the first prompt (its real columns) for next arrivals
            real = mask[0].bool()
            self.prefixes[key] = (
                list(prompts[0]),
                [tuple(x[:1][:, :, real] for x in kv) for kv in _layers(cache)],
            )
        return cache, mask, positions, out.logits[:, -1]

    def _shared_prefix(self, name: str, prompts: list[list[int]]) -> int:
        """Tokens all ``prompts`` share with the remembered prompt (0 below MIN_PREFIX); one token is always left
        to compute, since its logits give the first new token."""
        if not self.prefix_cache or name not in self.prefixes:
            return 0
        known = self.prefixes[name][0]
        n = min(len(known), *(len(p) - 1 for p in prompts))
        for p in prompts:
            i = 0
            while i < n and p[i] == known[i]:
                i += 1
            n = i
        return n if n >= MIN_PREFIX else 0

    def rows(self) -> int:
        return sum(len(b.rows) for b in self.batches.values())

    def jobs(self) -> list:
        return list({id(r.job): r.job for b in self.batches.values() for r in b.rows}.values())

    @torch.no_grad()
    def admit(self, jobs: list) -> None:
        """Prefill ``jobs`` (grouped per running batch), give each row its first token, join the running batches."""
        groups: dict[str, list] = {}
        for job in jobs:
            groups.setdefault(job.served.batch_key(), []).append(job)
        for name, group in groups.items():
            stops = {
                s.name: set(eos_ids(s.model, s.tokenizer)) for s in {id(j.served): j.served for j in group}.values()
            }
            rows = [Row(job, i, stops[job.served.name]) for job in group for i in range(job.n)]
            for job in group:
                self.results[id(job)] = [None] * job.n
            cache, mask, _, logits = self._prefill(rows)
            self.metrics.observe("tunelab_prefill_rows", len(rows), buckets=_batch_buckets())
            tokens, keep = self._advance(rows, logits)
            if not keep:
                continue
            layers = _layers(cache)
            if name not in self.batches:
                self.batches[name] = Batch(SlotCache(layers, rows=len(rows), columns=mask.shape[1] + GROW_COLUMNS))
            idx = torch.tensor(keep, dtype=torch.long, device=mask.device)
            self.batches[name].join(
                [rows[i] for i in keep],
                [tuple(x[idx] for x in kv) for kv in layers] if len(keep) < len(rows) else layers,
                mask[idx],
                [tokens[i] for i in keep],
            )

    @torch.no_grad()
    def step(self) -> None:
        """One decode step for every running batch."""
        for name in list(self.batches):
            batch = self.batches[name]
            served, slots = batch.rows[0].job.served, batch.slots
            start = time.perf_counter()
            mask = slots.step_mask()  # (rows, 1, 1, width)
            logits = _forward(
                batch.rows,
                input_ids=batch.tokens[:, None],
                attention_mask=mask,
                position_ids=slots.lengths[:, None],
                use_cache=True,
                **cache_kwarg(served.model, slots),
            ).logits[:, -1]  # (rows, vocab)
            slots.advance()
            self.metrics.observe("tunelab_batch_size", len(batch.rows), buckets=_batch_buckets())
            self.metrics.observe("tunelab_batch_seconds", time.perf_counter() - start)
            tokens, keep = self._advance(batch.rows, logits)
            batch.tokens = torch.tensor(tokens, dtype=torch.long, device=batch.tokens.device)
            batch.keep(keep)
            if not keep:
                del self.batches[name]

    def fail(self, message: str) -> None:
        """Answer every running job with an error and drop the batches (after a model failure)."""
        for job in self.jobs():
            job.emit("error", message)
            self.results.pop(id(job), None)
        self.batches.clear()

    def cancel_all(self) -> None:
        for job in self.jobs():
            job.cancel.set()

    def _advance(self, rows: list[Row], logits: torch.Tensor) -> tuple[list[int], list[int]]:
        """Pick each row's next token from ``logits`` (rows, vocab) and finish rows: (tokens, indices of the rows
        still running)."""
        now = time.monotonic()
        tokens = self._choose(rows, logits)
        keep = []
        for r, (row, tok) in enumerate(zip(rows, tokens)):
            self._observe(row, now)
            row.new.append(tok)
            if self._check(row, tok):
                self._finish(row)
            else:
                keep.append(r)
        return tokens, keep

    def _choose(self, rows: list[Row], logits: torch.Tensor) -> list[int]:
        if all(r.job.sampling.plain_greedy and r.job.logprobs is None and r.constraint is None for r in rows):
            return logits.argmax(-1).tolist()  # the common case, one op for the batch
        out = []
        for row, raw in zip(rows, logits.float()):
            s = row.job.sampling
            processed = raw
            if not s.plain_greedy:
                seen = torch.tensor(sorted(row.seen), dtype=torch.long)
                processed = sampling.penalize(raw, seen, row.counts, s)
            if row.constraint is not None:
                tok = row.constraint.pick(processed, lambda x, s=s, g=row.generator: sampling.choose(x, s, g))
                row.constraint.advance(tok)
            else:
                tok = sampling.choose(processed, s, row.generator)
            if row.job.logprobs is not None:
                self._logprob(row, raw, tok)
            out.append(tok)
        return out

    def _logprob(self, row: Row, raw: torch.Tensor, tok: int) -> None:
        """OpenAI's logprob entry for the chosen token: the model's own log-softmax, before any processing."""
        tokenizer = row.job.served.tokenizer
        lp, top = sampling.top_logprobs(raw.log_softmax(-1), tok, row.job.logprobs)
        with row.job.served.lock:
            text = tokenizer.decode([tok])
            alts = [(tokenizer.decode([t]), v) for t, v in top]
        entry = {
            "token": text,
            "logprob": lp,
            "bytes": list(text.encode()),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in alts],
        }
        if tok not in row.stop_ids:  # the end-of-sequence token is not part of the text
            row.logprobs.append(entry)
            row.unsent.append(entry)

    def _observe(self, row: Row, now: float) -> None:
        served = row.job.served
        if row.last_time is None:
            self.metrics.observe(TTFT, now - row.job.arrived, model=served.name)
        else:
            self.metrics.observe(ITL, now - row.last_time, buckets=ITL_BUCKETS, model=served.name)
        row.last_time = now

    def _check(self, row: Row, tok: int) -> bool:
        """Record ``tok`` in the row's state; True when the row is finished."""
        job, served = row.job, row.job.served
        row.seen.add(tok)
        if job.sampling.presence_penalty or job.sampling.frequency_penalty:
            if row.counts is None:
                row.counts = torch.zeros(served.model.get_output_embeddings().weight.shape[0])
            row.counts[tok] += 1
        eos = tok in row.stop_ids
        text = None
        if job.stream or job.stop:
            ids = row.new[:-1] if eos else row.new
            if not job.stream:  # a stop string of L characters spans at most L (non-empty) tokens
                ids = ids[-(row.keep + 3) :]
            with served.lock:
                text = served.tokenizer.decode(ids, skip_special_tokens=True)
        hit = text is not None and any(s in text for s in job.stop)
        full = len(row.new) >= job.max_tokens or len(job.prompt_ids) + len(row.new) >= job.window
        done = eos or hit or full or job.cancel.is_set() or (row.constraint is not None and row.constraint.done)
        if not done and job.stream:
            self._send(row, text)
        return done

    def _send(self, row: Row, text: str) -> None:
        """Stream the new text that can no longer turn into a stop string or an incomplete character."""
        safe = text[: len(text) - row.keep] if row.keep else text
        safe = safe.rstrip("\ufffd")
        if len(safe) > len(row.sent) and safe.startswith(row.sent):
            row.job.emit("delta", (row.index, safe[len(row.sent) :], row.unsent))
            row.sent, row.unsent = safe, []

    def _finish(self, row: Row) -> None:
        job, served = row.job, row.job.served
        with served.lock:
            o = finish(served.tokenizer, row.new, row.stop_ids, job.stop)
        out = Choice(
            o.text, o.tokens, o.finish_reason, o.dropped_messages, row.logprobs if job.logprobs is not None else None
        )
        if job.stream and (len(o.text) > len(row.sent) or row.unsent):
            row.job.emit("delta", (row.index, o.text[len(row.sent) :], row.unsent))
        self.metrics.inc("tunelab_generated_tokens_total", len(o.tokens), model=served.name)
        results = self.results[id(job)]
        results[row.index] = out
        if all(r is not None for r in results):
            del self.results[id(job)]
            if job.cancel.is_set():
                self.metrics.inc("tunelab_cancelled_total", reason="client_gone_or_timeout")
            job.emit("done", results)


class Choice(Output):
    """A finished row: generation's Output plus the logprob entries (None when not asked for)."""

    def __init__(self, text, tokens, finish_reason, dropped_messages=0, logprobs=None):
        super().__init__(text, tokens, finish_reason, dropped_messages)
        self.logprobs = logprobs


MIN_PREFIX = 8  # shorter shared prefixes are recomputed (copying their cache would cost about as much)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _batch_buckets() -> tuple:
    from tunelab.serve.metrics import BATCH_BUCKETS

    return BATCH_BUCKETS
