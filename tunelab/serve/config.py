"""The ``serve:`` config section: limits and batching of `tunelab serve` (each key is also a CLI flag)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from tunelab.errors import ConfigError
from tunelab.schema import Strict


class ServeConfig(Strict):
    host: str = Field("127.0.0.1", description="Interface to bind; the default accepts local connections only.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    batching: Literal["continuous", "static"] = Field(
        "continuous",
        description="continuous: requests join and leave the running batch at every decode step; static: one "
        "generate call per batch of queued requests (kept for comparison and for back-ends without a KV cache API).",
    )
    prefix_cache: bool = Field(
        False,
        description="continuous: reuse the keys/values of the prompt tokens a new request shares with the last "
        "prefilled prompt (a chat template's system prompt) instead of recomputing them.",
    )
    max_batch_size: int = Field(
        16,
        ge=1,
        le=1024,
        description="Most sequences decoded together (continuous: running sequences; static: one generate call).",
    )
    max_wait_ms: float = Field(
        10.0,
        ge=0,
        le=10_000,
        description="static batching: how long the worker waits for more requests to fill a batch.",
    )
    queue_size: int = Field(
        64, ge=1, le=100_000, description="Requests waiting for the worker; beyond this the server answers 429."
    )
    timeout_s: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="Per-request limit from arrival to the last token; then 504 and generation stops.",
    )
    max_tokens: int = Field(512, ge=1, le=32768, description="Cap on max_tokens of one request (400 above it).")
    max_prompt_tokens: int = Field(
        4096, ge=1, le=1_000_000, description="Cap on prompt length in tokens (400 above it)."
    )
    max_n: int = Field(8, ge=1, le=128, description="Cap on n (choices per request).")
    max_predict_inputs: int = Field(256, ge=1, le=100_000, description="Cap on texts in one /v1/predict request.")
    max_body_bytes: int = Field(
        1_000_000, ge=1024, le=1 << 30, description="Largest request body accepted (413 above it)."
    )
    retry_after_s: int = Field(1, ge=0, le=3600, description="Retry-After header value sent with 429.")
    threads: int | None = Field(
        None,
        ge=1,
        le=512,
        description="torch CPU threads for the models; null = $TUNELAB_THREADS, else this machine's physical cores.",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes behind the one port, each with its own copy of the models; /metrics adds "
        "up all of them.",
    )
    backend: Literal["auto", "torch", "onnxruntime", "llamacpp"] = Field(
        "auto",
        description="What runs the served run folders: auto (each run format's default), torch, onnxruntime (ONNX runs) "
        "or llamacpp (GGUF runs; needs llama-cpp-python).",
    )


def load(path: str | Path | None, overrides: dict) -> ServeConfig:
    """Read the ``serve:`` section of a YAML file (optional) and apply flag values; ConfigError names a bad key."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ConfigError(f"{path}:{mark.line + 1 if mark else '?'}: not valid YAML") from None
        if not isinstance(data, dict) or set(data) - {"serve"} or not isinstance(data.get("serve", {}), dict):
            raise ConfigError(
                f"{path}: expected one top-level mapping `serve:` with keys {', '.join(ServeConfig.model_fields)}"
            )
        raw = dict(data.get("serve") or {})
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path or 'serve'}: " + "; ".join(_explain(e) for e in exc.errors())) from None


def _explain(err: dict) -> str:
    key = "serve." + ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        import difflib

        close = difflib.get_close_matches(str(err["loc"][-1]), list(ServeConfig.model_fields), n=1)
        return f"unknown key '{key}'" + (f" (did you mean 'serve.{close[0]}'?)" if close else "")
    return f"{key}: {err['msg']} (got {err.get('input')!r})"
