"""Process start-up for the `tunelab` command: re-exec once with tcmalloc preloaded when it is installed.

glibc's malloc returns and re-requests the large activation buffers of every training step from the
kernel; tcmalloc keeps them, which measured 1.5x faster bf16 training on CPU (bench/results/levers.md).
Set TUNELAB_TCMALLOC=0 to opt out. The re-exec happens at most once (a marker variable guards it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CANDIDATES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libtcmalloc_minimal.so", "libtcmalloc.so")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
MARKER = "_TUNELAB_REEXEC"


def find_tcmalloc(dirs: tuple[str, ...] = LIB_DIRS) -> str | None:
    """Path of an installed tcmalloc shared library, or None."""
    for d in dirs:
        for name in CANDIDATES:
            path = Path(d) / name
            if path.is_file():
                return str(path)
    return None


def tcmalloc_loaded() -> bool:
    try:
        return "tcmalloc" in Path("/proc/self/maps").read_text()
    except OSError:
        return "tcmalloc" in os.environ.get("LD_PRELOAD", "")


def reexec_env(env: dict[str, str], lib: str | None) -> dict[str, str] | None:
    """The environment to re-exec with, or None when we should not (disabled, already done, nothing to load)."""
    if (
        env.get("TUNELAB_TCMALLOC", "1") == "0"
        or env.get(MARKER)
        or lib is None
        or "tcmalloc" in env.get("LD_PRELOAD", "")
    ):
        return None
    preload = " ".join(p for p in (lib, env.get("LD_PRELOAD", "")) if p)
    return {**env, "LD_PRELOAD": preload, MARKER: "1"}


def maybe_reexec(argv: list[str]) -> None:
    """Replace this process by ``python -m tunelab.cli argv`` with tcmalloc preloaded (returns if not applicable)."""
    if sys.platform != "linux" or tcmalloc_loaded():
        return
    env = reexec_env(dict(os.environ), find_tcmalloc())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "tunelab.cli", *argv], env)
