"""Argument types, flags and help shared by several subcommands (cli.py, recipes/commands.py, generation, serve)."""

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


def config_help() -> str:
    """Every config key with its description and default, one per line (`tunelab config`, `train --help`)."""
    from tunelab import docs

    rows = docs.describe()
    width = max(len(k) for k, _, _ in rows)
    return "\n".join(f"  {k:<{width}}  {d}" + (f" [default: {v}]" if v else "") for k, v, d in rows)


class HelpWithKeys(argparse.Action):
    """`-h/--help` that appends every config key; the config schema is imported only when help is asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.print_help()
        print("\nconfig keys:\n" + config_help())
        parser.exit()
