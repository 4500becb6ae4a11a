"""The llama.cpp back-end (llama-cpp-python, optional: ``pip install 'tunelab[llamacpp]'`` or ``make llamacpp``).

``LlamaCppModel`` runs a GGUF run's file; the run's own tokenizer encodes prompts and decodes tokens, so chat
templates, stop strings and token counts are exactly tunelab's. ``Engine`` is what ``tunelab serve`` calls in
place of transformers' batched ``generate`` (serve/batching.py, ``Served.engine``): llama-cpp-python's
``Llama`` object decodes one sequence at a time, so the jobs of a batch run one after another, each streaming,
stopping (EOS, stop strings, max_tokens, cancellation) and counted in the metrics exactly like the torch path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from tunelab.errors import TunelabError

INSTALL_HINT = (
    "the llamacpp back-end needs llama-cpp-python, built from source (about 8 minutes on 2 cores): "
    "make llamacpp, or pip install 'tunelab[llamacpp]'"
)
MAX_CONTEXT = 8192  # KV-cache tokens allocated by default (the run's context window is capped to it)


def require():
    try:
        import llama_cpp
    except ImportError:
        raise TunelabError(INSTALL_HINT) from None
    return llama_cpp


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppModel:
    """A GGUF file loaded by llama.cpp, with the run's HF config (context window) and generation config (EOS ids)."""

    def __init__(self, gguf_file: Path, model_dir: Path, threads: int | None = None, n_ctx: int | None = None):
        from tunelab.models import load as model_load

        llama_cpp = require()
        self.config = model_load.load_config(model_dir)
        self.generation_config = model_load.load_generation_config(model_dir)
        n_ctx = min(n_ctx or MAX_CONTEXT, self.config.max_position_embeddings)
        self.config.max_position_embeddings = n_ctx  # the window callers see is the one llama.cpp allocated
        self.threads = threads or torch.get_num_threads()
        self.llm = llama_cpp.Llama(
            model_path=str(gguf_file),
            n_ctx=n_ctx,
            n_batch=512,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            logits_all=False,
            verbose=False,
        )

    def tokens(self, prompt_ids: list[int], max_new: int, cfg, done: Callable[[int], bool] | None = None) -> list[int]:
        """Generated token ids (greedy or sampled per ``cfg``, a GenerationConfig), ending when ``done(token)`` says so."""
        if cfg.seed is not None:
            self.llm.set_seed(cfg.seed)
        sampling = (
            {"temp": cfg.temperature, "top_k": cfg.top_k, "top_p": cfg.top_p}
            if cfg.do_sample
            else {"temp": 0.0, "top_k": 1, "top_p": 1.0}
        )
        out: list[int] = []
        for token in self.llm.generate(
            prompt_ids, min_p=0.0, typical_p=1.0, repeat_penalty=cfg.repetition_penalty, reset=True, **sampling
        ):
            out.append(int(token))
            finished = done(int(token)) if done is not None else False  # always shown every token (it records them)
            if finished or len(out) >= max_new:
                break
        return out

    def logits(self, ids: list[int]) -> torch.Tensor:
        """Next-token logits after ``ids`` (vocab,) — for parity diagnostics."""
        import numpy as np

        llama_cpp = require()
        self.llm.reset()
        self.llm.eval(ids)
        last = llama_cpp.llama_get_logits(self.llm.ctx)  # the last position's logits (logits_all is off)
        return torch.from_numpy(np.ctypeslib.as_array(last, shape=(self.llm.n_vocab(),)).copy())

    def close(self) -> None:
        self.llm.close()


class Engine:
    """Generates a serve batch with llama.cpp: same streaming, stopping, results and metrics as the torch worker
    (implements ``tunelab.serve.engine.Engine``)."""

    def __init__(self, model: LlamaCppModel):
        self.model = model

    def generate(self, batch: list, metrics) -> None:
        from tunelab.generation.decode import eos_ids, finish
        from tunelab.serve.batching import RowMonitor
        from tunelab.serve.metrics import BATCH_BUCKETS

        served = batch[0].served
        tok = served.tokenizer
        stop_ids = set(eos_ids(self.model, tok))
        start = time.perf_counter()
        for job in batch:
            outputs = []
            for idx in range(job.n):
                monitor = RowMonitor([(job, idx)], tok, served.lock, stop_ids)
                self.model.tokens(
                    job.prompt_ids, job.max_tokens, job.cfg, lambda t, m=monitor: bool(m(torch.tensor([[t]]), None)[0])
                )
                new = monitor.new[0]
                with served.lock:
                    out = finish(tok, new, stop_ids, job.stop)
                monitor.flush(0, out.text)
                outputs.append(out)
                metrics.inc("tunelab_generated_tokens_total", len(out.tokens), model=served.name)
            if job.cancel.is_set():
                metrics.inc("tunelab_cancelled_total", reason="client_gone_or_timeout")
            job.emit("done", outputs)  # each job answers as soon as it is done, not at the end of the batch
        metrics.observe("tunelab_batch_size", sum(job.n for job in batch), buckets=BATCH_BUCKETS)
        metrics.observe("tunelab_batch_seconds", time.perf_counter() - start)
