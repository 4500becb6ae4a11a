"""How a `tunelab` command ends: one line on stderr and a status a script can test.

0 success; 2 a problem the user can fix (``TunelabError``, a file-system refusal such as a read-only
or full disk); 130 interrupted (Ctrl-C); 141 stdout closed early (``tunelab ... | head``), silently, as a
SIGPIPE death would be; 1 a bug in tunelab (one line too, ``--debug`` or ``TUNELAB_DEBUG=1`` shows
the traceback).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Callable

from tunelab.errors import TunelabError

USAGE, INTERRUPTED, BROKEN_PIPE, BUG = 2, 130, 141, 1

# OSErrors that describe the user's disk or paths, not a bug: reported as one line naming the file
USER_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENOSPC,
    errno.EROFS,
    errno.EDQUOT,
    errno.ENAMETOOLONG,
    errno.EXDEV,
    errno.ENOTEMPTY,
}


def run(command: Callable[[], int], *, debug: bool, on_interrupt: str = "interrupted") -> int:
    """Run ``command`` and turn every way it can end into an exit status and at most one stderr line."""
    debug = debug or os.environ.get("TUNELAB_DEBUG", "") not in ("", "0")
    try:
        code = command()
        sys.stdout.flush()  # inside the guard: a reader that went away surfaces here, not at interpreter exit
        return code
    except BrokenPipeError:
        return stdout_gone()
    except KeyboardInterrupt:
        if debug:  # where it landed, for a bug report
            import traceback

            traceback.print_exc()
        _line(on_interrupt, fresh_line=True)
        return INTERRUPTED
    except TunelabError as exc:
        if debug:
            raise
        _line(f"error: {exc}")
        return USAGE
    except OSError as exc:
        if debug:
            raise
        if exc.errno not in USER_ERRNOS:
            _line(_bug(exc))
            return BUG
        where = f"{exc.filename}: " if exc.filename else ""
        _line(f"error: {where}{exc.strerror or exc}")
        return USAGE
    except Exception as exc:  # noqa: BLE001 - anything else is a bug: one line, the traceback on request
        if debug:
            raise
        _line(_bug(exc))
        return BUG


def _bug(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"error: internal error: {type(exc).__name__}: {first} "
        "(this is a bug in tunelab; rerun with --debug for the traceback and report it)"
    )


def _line(msg: str, fresh_line: bool = False) -> None:
    """One line on stderr; after Ctrl-C on a terminal, start it on a fresh line (the ^C and any progress bar)."""
    try:
        prefix = "\n" if fresh_line and sys.stderr.isatty() else ""
        print(prefix + msg, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr itself is gone
        pass


def stdout_gone() -> int:
    """stdout's reader closed it (``| head``): stop quietly; point stdout at /dev/null so the exit flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return BROKEN_PIPE
