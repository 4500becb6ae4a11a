"""Ctrl-C and SIGTERM during training: finish the step, save, then stop; a second signal stops at once.

While ``StopSignals`` is active, the first SIGINT or SIGTERM only records the request; the loop finishes the
optimizer step it is in, writes a resumable checkpoint and raises ``Interrupted`` (exit status 130 for
SIGINT, 143 for SIGTERM). A second signal is not caught: SIGINT raises KeyboardInterrupt wherever the
program is (checkpoints are written atomically, so the previous one stays valid) and SIGTERM ends the
process. Handlers are only installed from the main thread (Python delivers signals there).

Under a launcher (torchrun, accelerate launch) Ctrl-C reaches each worker twice within milliseconds: from the
terminal and forwarded by the launcher. There a repeat within ``LAUNCHER_REPEAT_S`` counts as the same request.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

LAUNCHER_REPEAT_S = 2.0

NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class Interrupted(Exception):
    """Training stopped on a signal after saving; ``checkpoint`` is the resumable checkpoint (None if none)."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        super().__init__(f"interrupted by {NAMES.get(signum, f'signal {signum}')} at step {step}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Context manager that turns the first SIGINT/SIGTERM into a stop request (``requested`` holds the signal)."""

    def __init__(self, notify: Callable[[str], None] | None = None):
        self.requested: int | None = None
        self.notify = notify
        self._previous: dict[int, object] = {}
        self._at = 0.0
        self._launched = "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in NAMES:
                self._previous[sig] = signal.signal(sig, self._first)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _first(self, signum, frame) -> None:
        if self.requested is not None:  # a repeat: only handled here under a launcher
            if time.monotonic() - self._at < LAUNCHER_REPEAT_S:
                return  # the same Ctrl-C, forwarded by the launcher
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os._exit(128 + signum)
        self.requested, self._at = signum, time.monotonic()
        if not self._launched:  # a second signal acts at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self.notify is not None:
            again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            self.notify(f"{NAMES[signum]}: finishing this step and saving a checkpoint; {again} again quits at once")
