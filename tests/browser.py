"""Headless Chromium for browser tests (the dashboard, report.html): one place to launch it.

Drives Debian's ``chromium`` (``make browser`` installs it) through Playwright's Python package; Playwright's own
browser download is never used. Each page gets a fresh profile folder, no network services of its own, and a
record of console errors and page errors that the fixture fails the test on.

Use from a test module::

    from tests.browser import page  # noqa: F401  (the fixture)

    def test_something(page, tmp_path):
        page.goto(url)
        shot(page, tmp_path, "name")   # screenshot into the test's tmp folder
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-default-apps",
    "--disable-extensions",
]
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    """$TUNELAB_CHROMIUM, else Debian's chromium, else one on PATH."""
    given = os.environ.get("TUNELAB_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    for path in CANDIDATES:
        if Path(path).is_file():
            return path
    return shutil.which("chromium") or shutil.which("chromium-browser")


def skip_reason() -> str | None:
    """Why browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (`make setup` installs it with the test extra)"
    if chromium_path() is None:
        return (
            "no chromium found (install Debian's `chromium`: `make browser` does it as root; or set TUNELAB_CHROMIUM)"
        )
    return None


def launch(playwright, profile: Path, viewport: tuple[int, int] = (1280, 900)):
    """A headless Chromium context with a fresh profile in ``profile``."""
    profile.mkdir(parents=True, exist_ok=True)
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium_path(),
        headless=True,
        args=FLAGS,
        viewport={"width": viewport[0], "height": viewport[1]},
        timeout=60_000,
    )


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    """One Chromium per test module (starting it is the slow part); each test gets its own page."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = launch(pw, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.fixture
def page(browser_context):
    """A fresh page; the test fails if the page logs a console error or throws."""
    pg = browser_context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.console_errors = errors
    yield pg
    pg.close()
    assert not errors, "browser console errors:\n" + "\n".join(errors)


def shot(page, folder: Path, name: str) -> Path:
    """A full-page screenshot saved as folder/name.png (the test's tmp folder)."""
    path = Path(folder) / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread (a context manager; ``.url``)."""

    def __init__(self, app):
        import socket

        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)

    def __enter__(self) -> "ServerThread":
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
