"""`tunelab serve`: an OpenAI-compatible HTTP server for run folders and models.

config.py (the ``serve:`` section), schemas.py (request bodies, OpenAI error format),
registry.py (model names -> loaded models, several LoRA adapters and their base on one copy),
batching.py (the worker thread that owns the models; the static batching path),
continuous.py (iteration-level batching: one decode loop, per-row KV cache slots), sampling.py (per-row
token choice), structured.py (JSON-schema constrained decoding, tools), embeddings.py, pooled.py
(/v1/predict and /v1/embeddings pooled across requests), metrics.py (Prometheus text exposition, summed
across workers), openai_format.py (response and chunk shapes), app.py (routes), server.py (the command,
--workers), ray_app.py (Ray Serve deployment).
"""
