"""Start-up time of the `tunelab` command on a fresh clone: `tunelab --help`, `tunelab train --help`, `import tunelab`.

    .venv/bin/python bench/startup.py [--runs 15] [--ref HEAD] [--out bench/results/startup.md]

Clones the repository at ``--ref`` into a temporary folder (no __pycache__: the first run compiles the
bytecode, as a user's first command does) and runs each command with this venv's Python, the clone first
on PYTHONPATH. `tunelab --help` goes through ``main()`` exactly as the console script does, tcmalloc
re-exec included. Reports the first (cold) run, the median and the worst of the warm runs, and whether
torch was imported (``-X importtime``). The target: `tunelab --help` under 0.5 s without importing torch.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "tunelab --help": "import sys; sys.argv = ['tunelab', '--help']\nfrom tunelab.cli import main\nsys.exit(main())",
    "tunelab train --help": "import sys; sys.argv = ['tunelab', 'train', '--help']\nfrom tunelab.cli import main\nsys.exit(main())",
    "import tunelab": "import tunelab",
}


def timed(code: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
    )
    return time.perf_counter() - start


def imports_torch(code: str, env: dict) -> bool:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env={**env, "TUNELAB_TCMALLOC": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    return any(
        line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines() if line.startswith("import time:")
    )


def _tcmalloc() -> bool:
    sys.path.insert(0, str(ROOT))
    from tunelab import launch

    return launch.find_tcmalloc() is not None and os.environ.get("TUNELAB_TCMALLOC", "1") != "0"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--ref", default="HEAD", help="commit of this repository to clone")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "startup.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "tunelab"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", args.ref], check=True)
        commit = subprocess.run(
            ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        env = {**os.environ, "PYTHONPATH": str(clone), "PYTHONDONTWRITEBYTECODE": "0"}
        rows = []
        for name, code in COMMANDS.items():
            cold = timed(code, env)
            warm = [timed(code, env) for _ in range(args.runs)]
            rows.append((name, cold, statistics.median(warm), max(warm), imports_torch(code, env)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Start-up time on a fresh clone (`bench/startup.py`)",
        "",
        f"Commit {commit}, {cpu_model()}, Python {platform.python_version()}, {args.runs} warm runs per command, "
        f"load average {load:.1f} at the end, {time.strftime('%Y-%m-%d %H:%M')}; tcmalloc "
        f"{'installed (the command re-executes itself once under it, as a user gets)' if _tcmalloc() else 'not installed'}.",
        "",
        "| command | first run (cold, compiles bytecode) s | median s | worst s | imports torch |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{n}` | {c:.3f} | {m:.3f} | {w:.3f} | {'yes' if t else 'no'} |" for n, c, m, w, t in rows]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    help_row = rows[0]
    return 0 if help_row[2] < 0.5 and not help_row[4] else 1


if __name__ == "__main__":
    sys.exit(main())
