"""Routes of `tunelab ui`: the single-page front end (packaged static files) and its JSON/SSE API.

GET  /                      the page (static/index.html; everything else is client-side, hash-routed)
GET  /api/info              runs folder, read-only flag, working directory
GET  /api/runs              runs table rows, compare folders, jobs launched here
GET  /api/run?id=           one run: summary, config, final metrics, records, report, log
GET  /api/run/file?id=&name= a report file of a run (png, html, md, json, yaml, log)
GET  /api/run/events?id=    server-sent events: new metrics records, log text, state changes
GET  /api/run/samples?id=   first dev examples with the run's predictions and the gold answers
GET  /api/compare?ids=a,b   curves, headline numbers and config diff of several runs
GET  /api/schema            the launch form's fields
POST /api/validate          form values -> errors per key (the CLI's messages) and the command
POST /api/launch|resume|stop   start, resume or Ctrl-C a run (refused with --read-only)
POST /api/predict|generate  the playground
"""

from __future__ import annotations

import asyncio
import json
import re
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import StreamingResponse

from tunelab import runstate
from tunelab.errors import ConfigError, TunelabError
from tunelab.ui import index
from tunelab.ui.launcher import Launcher
from tunelab.ui.playground import Playground

STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "markdown.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ReadOnly(TunelabError):
    """Launching is disabled (--read-only)."""


def _static(name: str) -> bytes:
    return resources.files("tunelab.ui").joinpath("static", name).read_bytes()


def build_app(root: Path, read_only: bool = False, poll_s: float = 0.5) -> FastAPI:
    root = Path(root).resolve()
    launcher = Launcher(root)
    app = FastAPI(title="tunelab ui", docs_url=None, redoc_url=None, openapi_url=None)
    _errors_and_headers(app)
    app.include_router(_page_routes(root, read_only))
    app.include_router(_run_routes(root, launcher, poll_s))
    app.include_router(_launch_routes(launcher, read_only))
    app.include_router(_playground_routes(root, Playground()))
    return app


def _errors_and_headers(app: FastAPI) -> None:
    """User errors as JSON with the status they deserve; the security headers on every response."""

    @app.exception_handler(TunelabError)
    async def _user_error(_req, exc: TunelabError):
        status = (
            403 if isinstance(exc, (index.Forbidden, ReadOnly)) else 404 if isinstance(exc, index.NotFound) else 400
        )
        body = {"error": str(exc)}
        if isinstance(exc, ConfigError):
            body["problems"] = [{"key": k, "message": m} for k, m in exc.problems]
        return JSONResponse(body, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http_error(_req, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response


def _page_routes(root: Path, read_only: bool) -> APIRouter:
    """The page, its static files, /api/info and the launch form's schema."""
    router = APIRouter()

    @router.get("/")
    async def page():
        return Response(_static("index.html"), media_type=STATIC["index.html"])

    @router.get("/static/{name}")
    async def static(name: str):
        if name not in STATIC:
            raise index.NotFound(f"no static file '{name}'")
        return Response(_static(name), media_type=STATIC[name])

    @router.get("/api/info")
    async def info():
        import os

        return {"root": str(root), "read_only": read_only, "cwd": os.getcwd()}

    @router.get("/api/schema")
    async def schema():
        from tunelab.ui import schema as schema_mod

        return {"fields": schema_mod.form(), "runs_root": str(root)}

    return router


def _run_routes(root: Path, launcher: Launcher, poll_s: float) -> APIRouter:
    """Reading runs: the table, one run, its files, its live events, compare."""
    router = APIRouter()

    @router.get("/api/runs")
    async def runs():
        listing = await run_in_threadpool(index.list_runs, root)
        return {**listing, "jobs": launcher.views()}

    @router.get("/api/run")
    async def run(id: str):
        try:
            detail = await run_in_threadpool(index.detail, root, id)
        except index.NotFound:
            job = launcher.job(id)
            if job is None:
                raise
            return {"starting": job}  # launched here; the child has not written the run folder yet (or failed first)
        return {**detail, "job": launcher.job(id)}

    @router.get("/api/run/file")
    async def run_file(id: str, name: str):
        path, media = index.run_file(root, id, name)
        # report.html may carry its own inline styles; it renders sandboxed (no scripts, no same-origin access)
        csp = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
        return Response(path.read_bytes(), media_type=media, headers={"Content-Security-Policy": csp})

    @router.get("/api/run/events")
    async def events(id: str, request: Request, offset: int = 0):
        folder = index.run_dir(root, id)
        return StreamingResponse(
            _events(root, folder, offset, request, poll_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/api/compare")
    async def compare(ids: str):
        return await run_in_threadpool(index.compare, root, [i for i in ids.split(",") if i])

    return router


def _launch_routes(launcher: Launcher, read_only: bool) -> APIRouter:
    """Validating the form, launching, resuming and stopping runs (the last three refused with --read-only)."""
    router = APIRouter()

    @router.get("/api/job")
    async def job(id: str):
        view = launcher.job(id)
        if view is None:
            raise index.NotFound(f"no run '{id}' was launched from this dashboard")
        return view

    @router.post("/api/validate")
    async def validate(request: Request):
        values = (await _body(request)).get("values") or {}
        try:
            plan = await run_in_threadpool(launcher.plan, _values(values))
        except ConfigError as exc:
            return {"ok": False, "error": str(exc), "problems": [{"key": k, "message": m} for k, m in exc.problems]}
        return {"ok": True, **{k: v for k, v in plan.items() if k != "argv"}}

    @router.post("/api/launch")
    async def launch(request: Request):
        _writable(read_only)
        values = (await _body(request)).get("values") or {}
        return await run_in_threadpool(launcher.launch, _values(values))

    @router.post("/api/resume")
    async def resume(request: Request):
        _writable(read_only)
        return await run_in_threadpool(launcher.resume, str((await _body(request)).get("id", "")))

    @router.post("/api/stop")
    async def stop(request: Request):
        _writable(read_only)
        return launcher.stop(str((await _body(request)).get("id", "")))

    return router


def _playground_routes(root: Path, playground: Playground) -> APIRouter:
    """Trying a run: predictions, sample dev predictions, generation."""
    router = APIRouter()

    @router.post("/api/predict")
    async def predict(request: Request):
        body = await _body(request)
        folder = index.run_dir(root, str(body.get("id", "")))
        texts = body.get("texts")
        outputs = await run_in_threadpool(playground.predict, folder, texts)
        return {"outputs": outputs}

    @router.get("/api/run/samples")
    async def samples(id: str):
        folder = index.run_dir(root, id)
        return await run_in_threadpool(playground.samples, folder)

    @router.post("/api/generate")
    async def generate(request: Request):
        body = await _body(request)
        folder = index.run_dir(root, str(body.get("id", "")))
        decoding = body.get("decoding") or {}
        if not isinstance(decoding, dict):
            raise TunelabError("decoding: expected an object of generation keys")
        return await run_in_threadpool(playground.generate, folder, body.get("prompt"), body.get("messages"), decoding)

    return router


def _writable(read_only: bool) -> None:
    if read_only:
        raise ReadOnly(
            "this dashboard was started with --read-only: launching, resuming and stopping runs are disabled"
        )


async def _body(request: Request) -> dict:
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise TunelabError(f"request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TunelabError("request body must be a JSON object")
    return data


def _values(values) -> dict[str, str]:
    if not isinstance(values, dict):
        raise TunelabError("values: expected an object of config key -> text")
    return {str(k): "" if v is None else str(v) for k, v in values.items()}


def _sse(event: str, data) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _events(root: Path, folder: Path, offset: int, request: Request, poll_s: float):
    """Tail metrics.jsonl and train.log; send state changes; end a while after the run stops changing."""
    log_offset = (folder / runstate.LOG).stat().st_size if (folder / runstate.LOG).is_file() else 0
    last_state, quiet_polls = None, 0
    yield b"retry: 2000\n\n"
    while not await request.is_disconnected():
        records, offset = await asyncio.to_thread(index.read_records, folder / "metrics.jsonl", offset)
        if records:
            yield _sse("metrics", {"records": records, "offset": offset})
        text, log_offset = _read_from(folder / runstate.LOG, log_offset)
        if text:
            yield _sse("log", {"text": text})
        summary = await asyncio.to_thread(index.summary, root, folder)
        if summary["state"] != last_state or records:
            last_state = summary["state"]
            yield _sse("state", summary)
        quiet_polls = 0 if (records or text or summary["state"] == "running") else quiet_polls + 1
        if quiet_polls > 20:  # stopped and unchanged for ~10 s: the client reconnects if it still cares
            yield _sse("end", {})
            return
        await asyncio.sleep(poll_s)


def _read_from(path: Path, offset: int) -> tuple[str, int]:
    if not path.is_file():
        return "", offset
    size = path.stat().st_size
    if size < offset:
        offset = 0
    if size == offset:
        return "", offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size - offset)
    return data.decode("utf-8", errors="replace"), size


API_KEY_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{8,256}$")


def run(args) -> int:
    """`tunelab ui`: serve the dashboard until interrupted."""
    import os
    import sys

    import uvicorn

    from tunelab.ui.guard import LOOPBACK, Guard

    keys = [
        k for k in dict.fromkeys(list(args.api_key or []) + os.environ.get("TUNELAB_UI_API_KEYS", "").split(",")) if k
    ]
    for key in keys:
        if not API_KEY_RE.match(key):
            raise ConfigError("ui: --api-key must be 8-256 characters of letters, digits and ._~+/=-")
    loopback = args.host in LOOPBACK
    if not loopback and not keys:
        raise ConfigError(
            f"ui: --host {args.host} would expose the dashboard (it can launch training and read run folders); "
            "give --api-key KEY, or keep the default --host 127.0.0.1"
        )
    root = Path(args.runs)
    if not root.is_dir():
        raise ConfigError(f"ui: --runs {root}: no such folder")
    app = Guard(build_app(root, read_only=args.read_only), keys, loopback)
    print(
        f"ui: http://{args.host}:{args.port}/ over {root.resolve()}"
        + (" (read-only)" if args.read_only else "")
        + ("; API key required" if keys else ""),
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)
    return 0
