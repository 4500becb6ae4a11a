"""Pure ASGI middleware in front of every route: request metrics, API keys on /v1, body size limit.

Pure ASGI rather than Starlette's BaseHTTPMiddleware, which buffers streaming responses and hides
client disconnects from them.
"""

from __future__ import annotations

import hmac
import json
import time

from tunelab.serve.schemas import APIError

ROUTES = {
    "/health",
    "/metrics",
    "/v1/models",
    "/v1/completions",
    "/v1/chat/completions",
    "/v1/predict",
    "/v1/embeddings",
}


class _TooLarge(APIError):
    """Raised from ``receive`` when a chunked body passes the limit; the app's APIError handler answers 413."""


class Guard:
    def __init__(self, app, metrics, api_keys: list[str], max_body_bytes: int):
        self.app, self.metrics, self.max_body = app, metrics, max_body_bytes
        self.keys = [k.encode() for k in api_keys]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = path if path in ROUTES else "/v1/models/{id}" if path.startswith("/v1/models/") else "other"
        start, status = time.perf_counter(), [500]

        async def send_recording(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            error = self._check(scope, path)
            if error is not None:
                await _send_error(send_recording, error)
            else:
                await self._call_limited(scope, receive, send_recording)
        finally:
            self.metrics.inc("tunelab_requests_total", route=route, status=str(status[0]))
            self.metrics.observe("tunelab_request_latency_seconds", time.perf_counter() - start, route=route)

    def _check(self, scope, path: str) -> APIError | None:
        headers = dict(scope["headers"])
        if self.keys and path.startswith("/v1"):
            auth = headers.get(b"authorization", b"")
            given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
            if not any(hmac.compare_digest(given, k) for k in self.keys):
                why = "missing API key" if not given else "wrong API key"
                return APIError(
                    401,
                    f"{why}: send 'Authorization: Bearer KEY' with a key given to --api-key",
                    code="invalid_api_key",
                )
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return _too_large(self.max_body)
        return None

    async def _call_limited(self, scope, receive, send):
        """Count body bytes as they arrive (chunked uploads have no Content-Length)."""
        seen, started = [0], [False]

        async def receive_limited():
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body:
                    raise _TooLarge(413, _too_large(self.max_body).message, code="request_too_large")
            return message

        async def send_tracking(message):
            started[0] = started[0] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_limited, send_tracking)
        except _TooLarge:
            if not started[0]:
                await _send_error(send, _too_large(self.max_body))


def _too_large(limit: int) -> APIError:
    return APIError(413, f"request body larger than the server's limit of {limit} bytes", code="request_too_large")


async def _send_error(send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
