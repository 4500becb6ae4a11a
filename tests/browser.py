"""Headless Chromium for tests: Debian's `chromium` driven by Playwright (never a downloaded browser).

    from tests.browser import open_page
    with open_page(tmp_path) as (page, errors):
        page.goto(url)
        ...
        assert not errors          # console errors, page errors and failed requests

Skips (with the reason) when the playwright package or a chromium binary is missing; `make browser`
installs chromium with apt-get. TUNELAB_CHROMIUM overrides the binary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
]


def chromium_path() -> str | None:
    for candidate in (
        os.environ.get("TUNELAB_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextlib.contextmanager
def open_page(tmp_path: Path, width: int = 1200, height: int = 900):
    """Yield (page, errors) in a fresh headless Chromium with its own profile under tmp_path."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -e '.[test]')")
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium binary (make browser installs Debian's chromium; or set TUNELAB_CHROMIUM)")
    errors: list[str] = []
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=exe,
            headless=True,
            args=ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            yield page, errors
        finally:
            ctx.close()
