"""The `tunelab serve` command: bind, load, serve; with ``--workers N``, N processes behind one port.

The socket is bound once, before any model loads (a port in use fails at once). With one worker this
process loads the models and runs uvicorn on it. With N > 1 it stays a small supervisor: it starts N worker
processes (spawned, so none inherits a half-initialised torch), each loads its own copy of the models and
accepts connections on the shared socket (the kernel hands each connection to one of them), and each writes
its metrics to a shared folder so every worker's /metrics adds up the whole server. If a worker dies the
supervisor stops the others and exits non-zero; Ctrl-C stops all.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import tempfile
import time

from tunelab.errors import ConfigError


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def api_keys(given: list[str] | None) -> list[str]:
    """Keys from --api-key (repeatable) and the comma-separated TUNELAB_API_KEYS variable."""
    keys = list(given or []) + [k.strip() for k in os.environ.get("TUNELAB_API_KEYS", "").split(",")]
    return [k for k in dict.fromkeys(keys) if k]


def run(args) -> int:
    """`tunelab serve RUN_DIR|MODEL ...`: load, then serve until interrupted."""
    from tunelab.serve import config as serve_config
    from tunelab.serve import registry
    from tunelab.serve.config import ServeConfig

    flags = {k: getattr(args, k, None) for k in ServeConfig.model_fields}
    cfg = serve_config.load(args.config, flags)
    keys = api_keys(args.api_key)
    registry.parse_items(args.targets)  # bad names fail before anything loads
    sock = listen(cfg.host, cfg.port)  # a port in use fails before the models load, not after
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not keys:
        _stderr(f"serve: warning: listening on {cfg.host} without API keys; anyone who can reach it can use it")
    if cfg.workers == 1:
        return _serve(args.targets, cfg, keys, sock, None)
    return _supervise(args.targets, cfg, keys, sock)


def _serve(targets: list[str], cfg, keys: list[str], sock: socket.socket, metrics_dir: str | None) -> int:
    """One server process: load the models, serve on ``sock`` until stopped."""
    import uvicorn

    from tunelab.serve import registry
    from tunelab.serve.app import build_app

    served = registry.load_all(targets, _stderr, cfg.backend)
    port = sock.getsockname()[1]
    _stderr(
        f"serve: {len(served)} model(s) on http://{cfg.host}:{port}/v1 ({', '.join(served)})"
        + ("; API key required" if keys else "")
        + (f"; worker {os.getpid()}" if metrics_dir else "")
    )
    app = build_app(served, cfg, keys, metrics_dir=metrics_dir)
    config = uvicorn.Config(app, host=cfg.host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _worker(targets, cfg_data: dict, keys, sock: socket.socket, metrics_dir: str) -> None:
    from tunelab.serve.config import ServeConfig

    sys.exit(_serve(targets, ServeConfig.model_validate(cfg_data), keys, sock, metrics_dir))


def _supervise(targets: list[str], cfg, keys: list[str], sock: socket.socket) -> int:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    # SIGTERM (a service manager, `kill`) must run the cleanup below too, or the workers outlive the supervisor
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix="tunelab-serve-metrics-") as metrics_dir:
        procs = []
        for _ in range(cfg.workers):
            # multiprocessing pickles the listening socket as a duplicated descriptor (resource_sharer)
            p = ctx.Process(target=_worker, args=(targets, cfg.model_dump(), keys, sock, metrics_dir))
            p.start()
            procs.append(p)
        _stderr(
            f"serve: {cfg.workers} workers ({', '.join(str(p.pid) for p in procs)}) share port {sock.getsockname()[1]}"
        )
        try:
            while all(p.is_alive() for p in procs):
                time.sleep(0.5)
            dead = [p for p in procs if not p.is_alive()]
            _stderr(f"serve: worker {dead[0].pid} exited with status {dead[0].exitcode}; stopping the others")
            return 1
        except (KeyboardInterrupt, SystemExit):
            return 0
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(10)


def listen(host: str, port: int) -> socket.socket:
    """Bind the server's socket now (uvicorn serves on it later); ConfigError if the address is taken or invalid."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"serve: --host {host}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: rebinding after a restart works
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"serve: port {port} on {host} is already in use; choose another with --port "
                "(--port 0 picks a free one)"
            ) from None
        raise ConfigError(f"serve: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock
