"""What every benchmark records: the machine (CPU model, flags, kind, `tunelab doctor`'s measurement) and the load.

Results go to bench/results/<cpu-kind>/ (e.g. avx512-bf16-noamx, avx2, amx, avx2-emulated), so runs on
different kinds of CPU sit side by side and never overwrite each other.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine(threads: int, seconds: float = 1.0) -> dict:
    """`tunelab doctor`'s report measured now with ``threads`` torch threads, plus the date."""
    import torch

    from tunelab import hardware

    torch.set_num_threads(threads)
    rep = hardware.report(seconds=seconds)
    rep["date"] = time.strftime("%Y-%m-%d %H:%M")
    return rep


def results_dir(out: str | None = None) -> Path:
    """bench/results/<cpu kind>/ (or ``out``), created."""
    from tunelab import hardware

    folder = Path(out) if out else RESULTS / hardware.cpu_kind()[0]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def header(rep: dict, load_before: str, load_after: str, command: str) -> list[str]:
    """The lines every results file starts its machine section with."""
    from tunelab import hardware

    kind = rep["kind"]
    return [
        f"Machine: **{kind['label']}** (kind `{kind['name']}`), {rep['cpu']['model']}; measured {rep['date']}; "
        f"load average before/after: {load_before} / {load_after}.",
        f"Command: `{command}`",
        "",
        "`tunelab doctor` on this machine at the start of the run:",
        "",
        "```",
        *hardware.format_report(rep),
        "```",
        "",
    ]
