"""`tunelab chat` driven through a pseudo-terminal, as a user would type it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _controlling_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is the pty, so ^C there sends SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A child process on a pty: send lines, read until a marker appears."""

    def __init__(self, argv: list[str]):
        self.master, slave = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, preexec_fn=_controlling_terminal
        )
        os.close(slave)
        self.seen = ""

    def read_until(self, marker: str, timeout: float = 120.0) -> str:
        start, end = len(self.seen), time.monotonic() + timeout
        while marker not in self.seen[start:]:
            assert time.monotonic() < end, f"timed out waiting for {marker!r}; got {self.seen[start:]!r}"
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode("utf-8", "replace").replace("\r\n", "\n")
                except OSError:  # child closed the terminal
                    break
        return self.seen[start:]

    def send(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def key(self, char: str) -> None:
        """A control key as typed: "\x03" (Ctrl-C: the terminal sends SIGINT), "\x04" (Ctrl-D: end of input)."""
        os.write(self.master, char.encode())

    def close(self) -> int:
        code = self.proc.wait(timeout=60)
        os.close(self.master)
        return code


def test_chat_session_over_a_pty(tiny_llama_dir):
    term = Terminal(
        [
            sys.executable,
            "-m",
            "tunelab.cli",
            "chat",
            str(tiny_llama_dir),
            "--max-new-tokens",
            "4",
            "--context-window",
            "64",
        ]
    )
    try:
        assert "/reset" in term.read_until("> ")  # the help line, then the prompt
        term.send("hello there")
        reply = term.read_until("> ")
        assert reply.startswith("hello there\n")  # the terminal echoes the typed line, then the streamed reply
        term.send("/set temperature=abc")
        assert "not set" in term.read_until("> ")
        term.send("/set top-k=1")
        assert "top_k = 1" in term.read_until("> ")
        term.send("/system You are terse.")
        assert "system prompt set" in term.read_until("> ")
        for i in range(6):  # fill the 64-token window: the oldest turns are dropped and it says so
            term.send(f"question number {i} about movies")
            term.read_until("> ")
        assert "context window: dropped" in term.seen
        term.send("/reset")
        assert "conversation cleared" in term.read_until("> ")
        term.key("\x04")  # Ctrl-D on an empty line: end of input leaves
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()


@pytest.fixture(scope="module")
def long_llama_dir(tmp_path_factory) -> Path:
    """A tiny Llama with 8,192 positions whose greedy reply runs for thousands of tokens (seconds): time to press Ctrl-C."""
    from tests.conftest import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("long-llama"), max_positions=8192)


def test_ctrl_c_stops_a_streaming_reply_and_keeps_the_conversation(long_llama_dir):
    term = Terminal([sys.executable, "-m", "tunelab.cli", "chat", str(long_llama_dir), "--max-new-tokens", "6000"])
    try:
        term.read_until("> ")
        term.send("hello there")
        term.read_until("hello there\n")
        start = len(term.seen)
        end = time.monotonic() + 60
        while term.seen.count("\n", start) < 20:  # the reply is streaming (this model answers with newlines)
            assert time.monotonic() < end and term.proc.poll() is None, term.seen[-500:]
            term.read_until("\n", timeout=30)
        term.key("\x03")  # Ctrl-C mid-reply
        assert "reply stopped" in term.read_until("> ", timeout=30)
        assert term.proc.poll() is None  # still running: the reply stopped, not the chat
        term.send("/set max_new_tokens=2")
        term.read_until("> ")
        term.send("and now?")  # the conversation goes on: the history (with the stopped reply) is kept
        term.read_until("> ")
        term.key("\x03")  # Ctrl-C at the prompt leaves
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    for bad in ("Traceback", "terminate called", "Aborted", "resume", "KeyboardInterrupt"):
        assert bad not in term.seen, term.seen[-2000:]


def test_a_stopped_reply_stays_in_the_history(monkeypatch):
    """In-process: Ctrl-C (KeyboardInterrupt) after two pieces; the next turn sees the partial reply; /quit leaves."""
    import io

    from tunelab.generation import chat
    from tunelab.generation.config import GenerationConfig
    from tunelab.generation.target import Target

    seen, closed = [], []

    def fake_stream(model, tokenizer, messages, cfg, template=None, log=None):
        seen.append([dict(m) for m in messages])
        try:
            yield "Once upon"
            yield " a time"
            if len(seen) == 1:
                raise KeyboardInterrupt  # as if Ctrl-C arrived while waiting for the next piece
            yield "."
        finally:
            closed.append(len(seen))

    monkeypatch.setattr(chat, "stream", fake_stream)
    out, logs = io.StringIO(), []
    code = chat.run(
        Target(None, None, GenerationConfig(), "chatml"),
        stdin=io.StringIO("tell me\ngo on\n/quit\n"),
        stdout=out,
        log=logs.append,
    )
    assert code == 0 and closed == [1, 2]  # each reply's generator was closed (its thread stopped and joined)
    assert any("reply stopped" in m for m in logs)
    assert seen[1] == [
        {"role": "user", "content": "tell me"},
        {"role": "assistant", "content": "Once upon a time"},
        {"role": "user", "content": "go on"},
    ]
