"""On-disk cache of encoded datasets: a second run on the same data does not tokenise again.

The key hashes what determines the features: the rows themselves (so the data file's content, the
slice and the dev split all count), the tokenizer (its full definition, not its name) and the encode
options. Files live in ``$TUNELAB_CACHE`` (default ``~/.cache/tunelab``); delete the folder to clear it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")
FORMAT = 1  # bump when an encoder's output changes for the same inputs


def cache_dir() -> Path:
    return Path(os.environ.get("TUNELAB_CACHE") or Path.home() / ".cache" / "tunelab")


def tokenizer_digest(tokenizer) -> str:
    """Hash of everything that makes a tokenizer produce its ids: the fast tokenizer's JSON, specials, template."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(
        backend.to_str().encode() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items())).encode()
    )
    h.update(
        json.dumps(
            [
                str(getattr(tokenizer, "chat_template", None)),
                tokenizer.pad_token,
                tokenizer.eos_token,
                tokenizer.bos_token,
                getattr(tokenizer, "padding_side", None),
            ]
        ).encode()
    )
    return h.hexdigest()


def key(rows: list, tokenizer, **options: Any) -> str:
    """Cache key of encoding ``rows`` with ``tokenizer`` and ``options`` (rows hashed by their repr)."""
    h = hashlib.sha256(f"tunelab-cache-{FORMAT}".encode())
    for r in rows:
        h.update(repr(r).encode())
        h.update(b"\0")
    h.update(tokenizer_digest(tokenizer).encode())
    h.update(json.dumps(options, sort_keys=True, default=repr).encode())
    return h.hexdigest()[:32]


def cached(cache_key: str, build: Callable[[], T], enabled: bool = True, log: Callable[[str], None] | None = None) -> T:
    """``build()``'s result, read from the cache when present, else built and written (atomically)."""
    if not enabled:
        return build()
    path = cache_dir() / f"{cache_key}.pkl"
    if path.is_file():
        try:
            with open(path, "rb") as f:
                value = pickle.load(f)
            if log:
                log(f"encoded data from cache {path}")
            return value
        except (OSError, pickle.UnpicklingError, EOFError):
            pass  # a damaged entry is rebuilt below
    value = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    except OSError as exc:  # a read-only home must not stop training
        if log:
            log(f"encoded-data cache not written ({exc})")
    return value
