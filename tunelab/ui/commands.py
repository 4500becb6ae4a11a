"""Argument parsing of `tunelab ui`; cli.py only dispatches."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "ui", help="web dashboard over a runs folder: live curves, compare, launch, playground (127.0.0.1 by default)"
    )
    p.add_argument(
        "--runs", default="runs", help="folder holding run folders (and `tunelab compare` folders) [default: runs]"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on; any other than 127.0.0.1/localhost needs --api-key"
    )
    p.add_argument("--port", type=int, default=7860, help="port [default: 7860]")
    p.add_argument(
        "--api-key",
        action="append",
        help="require this key (repeatable; also env TUNELAB_UI_API_KEYS, comma-separated)",
    )
    p.add_argument(
        "--read-only", action="store_true", help="browse and try runs only: no launching, resuming or stopping"
    )


def ui(args) -> int:
    from tunelab.ui import app

    return app.run(args)
