"""`tunelab chat`: an interactive multi-turn chat in the terminal that streams each reply as it is produced."""

from __future__ import annotations

import sys
from typing import Callable, TextIO

import yaml

from tunelab.errors import ConfigError
from tunelab.generation.generate import stream
from tunelab.generation.target import Target, with_overrides

HELP = (
    "commands: /reset (forget the conversation), /system TEXT (set the system prompt), /set key=value (decoding), /quit"
)


def run(
    target: Target,
    system: str | None = None,
    *,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> int:
    """Read user lines until /quit or end of input; each reply streams to ``stdout``."""
    cfg, history = target.cfg, []
    log(HELP)
    while True:
        stdout.write("> ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            command, _, arg = line.partition(" ")
            if command == "/quit":
                return 0
            if command == "/reset":
                history = []
                log("conversation cleared")
            elif command == "/system":
                system = arg.strip() or None
                log(f"system prompt {'set' if system else 'cleared'}")
            elif command == "/set":
                cfg = _set(cfg, arg, log)
            else:
                log(f"unknown command {command}; {HELP}")
            continue
        history.append({"role": "user", "content": line})
        messages = ([{"role": "system", "content": system}] if system else []) + history
        reply = ""
        for piece in stream(target.model, target.tokenizer, messages, cfg, template=target.template, log=log):
            reply += piece
            stdout.write(piece)
            stdout.flush()
        stdout.write("\n")
        stdout.flush()
        history.append({"role": "assistant", "content": reply.strip()})


def _set(cfg, arg: str, log):
    key, eq, value = arg.partition("=")
    if not eq or not key.strip():
        log("usage: /set key=value, e.g. /set temperature=0.7")
        return cfg
    key = key.strip().replace("-", "_")
    try:
        new = with_overrides(cfg, {key: yaml.safe_load(value)})
    except (ConfigError, yaml.YAMLError) as exc:
        log(f"not set: {exc}")
        return cfg
    log(f"{key} = {getattr(new, key)!r}")
    return new
