"""Fixtures for the evaluation tests: the shared headless-Chromium fixtures (tests/browser.py)."""

from tests.browser import browser_context, page  # noqa: F401  (browser fixtures for this folder's tests)
