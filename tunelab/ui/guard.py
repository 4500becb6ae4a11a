"""The dashboard's front door (pure ASGI middleware): Host check, API key, and CSRF-safe writes.

- Host: on a loopback bind, requests must name a loopback host (defeats DNS rebinding: a web page on
  evil.example resolving to 127.0.0.1 still sends ``Host: evil.example``).
- API key (when configured): ``Authorization: Bearer KEY``, ``X-API-Key: KEY``, or the HttpOnly cookie set by
  opening any page once with ``?key=KEY`` (browsers cannot put headers on EventSource or image requests).
- Writes (POST) must be ``application/json`` with a matching Origin (when sent) and a bounded body: a form on
  another site cannot post JSON without a CORS preflight, which this server never grants.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qsl, urlencode

COOKIE = "tunelab_ui_key"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    def __init__(self, app, keys: list[str], loopback: bool, max_body: int = 1 << 20):
        self.app, self.keys, self.loopback, self.max_body = app, keys, loopback, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.loopback and _hostname(host) not in LOOPBACK:
            return await _reply(
                send, 400, f"unexpected Host header '{host}': this dashboard answers only on 127.0.0.1/localhost"
            )
        if self.keys:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if "key" in query and self._valid(query["key"]):
                rest = urlencode({k: v for k, v in query.items() if k != "key"})
                location = scope["path"] + (f"?{rest}" if rest else "")
                cookie = f"{COOKIE}={query['key']}; HttpOnly; SameSite=Strict; Path=/"
                return await _reply(
                    send, 303, "signed in", [(b"location", location.encode()), (b"set-cookie", cookie.encode())]
                )
            if not self._valid(_token(headers)):
                return await _reply(
                    send,
                    401,
                    "this dashboard needs its API key: open it once as http://HOST:PORT/?key=YOUR_KEY, "
                    "or send 'Authorization: Bearer YOUR_KEY'",
                )
        if scope["method"] not in ("GET", "HEAD"):
            problem = self._write_problem(headers, host)
            if problem:
                return await _reply(send, problem[0], problem[1])
        return await self.app(scope, receive, send)

    def _valid(self, token: str | None) -> bool:
        return bool(token) and any(hmac.compare_digest(token.encode(), k.encode()) for k in self.keys)

    def _write_problem(self, headers: dict, host: str) -> tuple[int, str] | None:
        if not headers.get("content-type", "").startswith("application/json"):
            return 415, "requests that change something must be application/json"
        origin = headers.get("origin")
        if origin and origin.split("://", 1)[-1] != host:
            return 403, f"cross-origin request from {origin} refused"
        length = headers.get("content-length")
        if length is None or not length.isdigit():
            return 411, "a request body needs a Content-Length"
        if int(length) > self.max_body:
            return 413, f"request body over {self.max_body:,} bytes"
        return None


def _token(headers: dict) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


async def _reply(send, status: int, message: str, extra: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
