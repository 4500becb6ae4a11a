"""`tunelab chat` driven through a pseudo-terminal, as a user would type it."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class Terminal:
    """A child process on a pty: send lines, read until a marker appears."""

    def __init__(self, argv: list[str]):
        self.master, slave = pty.openpty()
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
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
        term.send("/quit")
        assert term.close() == 0
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
