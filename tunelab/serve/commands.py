"""Argument parsing of `tunelab serve`; cli.py only dispatches. Every `serve:` config key is a flag."""

from __future__ import annotations


def add_parser(sub) -> None:
    from tunelab.serve.config import ServeConfig

    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server for runs and models (127.0.0.1 by default)")
    p.add_argument(
        "targets",
        nargs="+",
        metavar="RUN_DIR|MODEL|NAME=RUN_DIR",
        help="run folders or models to serve; each is served under its folder name, or NAME",
    )
    p.add_argument("--config", help="YAML file with a `serve:` section (flags override it)")
    p.add_argument(
        "--api-key", action="append", help="require this key (repeatable; also env TUNELAB_API_KEYS, comma-separated)"
    )
    for key, field in ServeConfig.model_fields.items():
        typ = float if field.annotation is float else int if "int" in str(field.annotation) else str
        p.add_argument(
            "--" + key.replace("_", "-"),
            dest=key,
            type=typ,
            default=None,
            help=f"{field.description} [default: {field.default}]",
        )


def serve(args) -> int:
    from tunelab.serve import server

    return server.run(args)
