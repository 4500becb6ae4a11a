"""Argument types and flags shared by several subcommands (cli.py, generation/commands.py, serve/commands.py)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def add_threads_flag(p) -> None:
    """--threads for the inference commands (train has train.threads)."""
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: $TUNELAB_THREADS, else this machine's physical cores)",
    )
