"""The interface between the server's worker and a generation engine other than transformers' ``generate``.

The worker (batching.py) forms batches of generation jobs that share a model and sampling settings. For a model
served with the torch back-end it decodes them itself; a served model that carries an ``Engine`` (llama.cpp:
tunelab/export/llamacpp.py) gets the batch instead and must answer every job exactly as the torch path does:
stream ``("delta", (index, text, None))`` while generating when ``job.stream``, end each choice at EOS, its own
``max_tokens``, its stop strings or ``job.cancel``, ``emit("done", [Output, ...])`` once per job (one Output per
choice), and record ``tunelab_generated_tokens_total``, ``tunelab_batch_size`` and ``tunelab_batch_seconds``.
An exception is answered by the worker with an error for every job of the batch.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Engine(Protocol):
    def generate(self, jobs: list, metrics) -> None:
        """Decode ``jobs`` (batching.Job, same model and sampling settings) and answer each through ``job.emit``."""
