"""Test harness: a real uvicorn server on a free 127.0.0.1 port, in a thread of the test process (stopped by the fixture)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

from tunelab.serve.app import build_app
from tunelab.serve.config import ServeConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(served: dict, keys: list[str] | None = None, **cfg):
    """Serve ``served`` (name -> registry.Served) until the block ends; yields the base URL."""
    import uvicorn

    port = free_port()
    app = build_app(served, ServeConfig(port=port, **cfg), keys, log=lambda m: None)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on", log_config=None)
    )  # no dictConfig: it would close pytest's capture handlers
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "server did not start within 10 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def client(base: str, key: str = "none"):
    import openai

    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=60)
