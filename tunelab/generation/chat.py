"""`tunelab chat`: an interactive multi-turn chat in the terminal that streams each reply as it is produced."""

from __future__ import annotations

import sys
from typing import Callable, TextIO

import yaml

from tunelab.errors import ConfigError
from tunelab.generation.decode import stream
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
    """Read user lines until /quit, end of input (Ctrl-D) or Ctrl-C at the prompt; each reply streams to ``stdout``.

    Ctrl-C while a reply streams stops that reply (the generating thread is stopped and joined), keeps
    what was shown of it in the conversation, and returns to the prompt.
    """
    cfg, history = target.cfg, []
    log(HELP)
    while True:
        line = _prompt(stdin, stdout)
        if line is None:
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
        reply, stopped = _reply(target, messages, cfg, stdout, log)
        history.append({"role": "assistant", "content": reply.strip()})
        if stopped:
            log("(reply stopped; the conversation is kept. Ctrl-C at the prompt or Ctrl-D leaves)")


def _prompt(stdin: TextIO, stdout: TextIO) -> str | None:
    """The next typed line, or None to leave (end of input, or Ctrl-C at the prompt)."""
    try:  # the prompt's write too: a Ctrl-C pressed as it appears lands there
        stdout.write("> ")
        stdout.flush()
        line = stdin.readline()
    except KeyboardInterrupt:
        line = ""
    if not line:
        stdout.write("\n")  # leave the shell's prompt on a line of its own
        stdout.flush()
        return None
    return line


def _reply(target: Target, messages: list[dict], cfg, stdout: TextIO, log) -> tuple[str, bool]:
    """Stream one reply; Ctrl-C stops it. Returns (the text shown, whether it was stopped)."""
    reply, pieces = "", stream(target.model, target.tokenizer, messages, cfg, template=target.template, log=log)
    try:
        for piece in pieces:
            reply += piece
            stdout.write(piece)
            stdout.flush()
        stopped = False
    except KeyboardInterrupt:
        stopped = True
    finally:
        pieces.close()  # stops the generating thread at its next token and waits for it
    stdout.write("\n")
    stdout.flush()
    return reply, stopped


def _set(cfg, arg: str, log):
    from tunelab.generation.config import decoding_update

    key, eq, value = arg.partition("=")
    if not eq or not key.strip():
        log("usage: /set key=value, e.g. /set temperature=0.7")
        return cfg
    key = key.strip().replace("-", "_")
    try:
        update = decoding_update({key: yaml.safe_load(value)})
        new = with_overrides(cfg, update)
    except (ConfigError, ValueError, yaml.YAMLError) as exc:
        log(f"not set: {exc}")
        return cfg
    shown = f"{key} = {getattr(new, key)!r}" if key in update else f"{key} = {value.strip()}"
    if "do_sample" in update and key != "do_sample":
        shown += f" ({'sampling' if new.do_sample else 'greedy decoding'})"
    log(shown)
    return new
