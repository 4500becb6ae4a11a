"""`tunelab serve`: an OpenAI-compatible HTTP server for run folders and models.

config.py (the ``serve:`` section), schemas.py (request bodies, OpenAI error format),
registry.py (model names -> loaded models, several LoRA adapters on one base),
batching.py (the worker thread that owns the models and batches generation),
metrics.py (Prometheus text exposition), app.py (routes, middleware, the command).
"""
