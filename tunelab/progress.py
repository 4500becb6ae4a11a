"""Progress output: a live bar on a terminal, a plain line every so often anywhere else, and quiet third parties.

A carriage-return bar written into a redirected log turns it into one enormous line, so when stderr is not a
terminal the training loop gets ``Lines`` instead: the same calls, a readable line every ``every_s`` seconds.
``third_party(verbose)`` keeps the libraries tunelab drives (tqdm bars inside transformers' GGUF loading and
shard writing, their warnings) silent unless the user asks for ``--verbose``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import TextIO

# Environment switches the libraries document; read when they are imported, so set before that.
QUIET_ENV = {
    "TQDM_DISABLE": "1",  # every tqdm bar whose caller does not pass disable= (ours always does)
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


QUIET_LOGGERS = ("torchao", "torch.utils._pytree")


def third_party(verbose: bool) -> None:
    """Silence other libraries' progress bars and warnings for this process and its children, unless ``verbose``.

    A variable the user already set wins (``setdefault``). tunelab's own messages go through its log, not
    ``warnings``, so ignoring warnings hides only other libraries' notices (peft's, transformers').
    """
    if verbose or os.environ.get("TUNELAB_VERBOSE", "") not in ("", "0"):
        os.environ["TUNELAB_VERBOSE"] = "1"  # child processes (compare's per-method runs) stay verbose too
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.simplefilter("ignore")
    import logging

    # peft and transformers import torchao when it is installed (the compress extra); torchao then logs a warning
    # per CUDA-only extension it cannot load, and torch one per enum torchao registers: noise on every CPU command
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # already imported (a caller that imported it first): switch it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def bar(
    total: int,
    initial: int = 0,
    quiet: bool = False,
    *,
    stream: TextIO | None = None,
    unit: str = "step",
    every_s: float = 30.0,
):
    """A progress reporter with tqdm's ``update``/``set_postfix``/``close``: a bar on a terminal, else ``Lines``."""
    stream = stream or sys.stderr
    if quiet:
        return Lines(total, initial, stream, unit, every_s=float("inf"))
    if _is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            initial=initial,
            disable=False,
            file=stream,
            unit=unit,
            dynamic_ncols=True,
            leave=False,
            mininterval=1.0,
        )
    return Lines(total, initial, stream, unit, every_s)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Lines:
    """A plain line (``step 40/300 (13%), loss=0.4123, tok_s=2104, 0:52 elapsed, ETA 5:38``) every ``every_s`` seconds."""

    def __init__(self, total: int, initial: int, stream: TextIO, unit: str = "step", every_s: float = 30.0):
        self.total, self.n, self.stream, self.unit, self.every_s = total, initial, stream, unit, every_s
        self.start_n, self.start = initial, time.monotonic()
        self.last = self.start
        self.postfix: dict[str, object] = {}

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._write(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        pass  # the loop logs its own summary; a final progress line would repeat it

    def line(self, now: float) -> str:
        elapsed = now - self.start
        done = self.n - self.start_n
        eta = elapsed / done * (self.total - self.n) if done > 0 else None
        parts = [f"{self.unit} {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f}%)"]
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        parts.append(f"{_clock(elapsed)} elapsed" + (f", ETA {_clock(eta)}" if eta is not None else ""))
        return ", ".join(parts)

    def _write(self, now: float) -> None:
        try:
            print(self.line(now), file=self.stream, flush=True)
        except (OSError, ValueError):
            pass


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
