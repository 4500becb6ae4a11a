"""Start-up of a command on the packaged GGUF model: first start (de-quantise and cache) vs later starts (cache hit).

    .venv/bin/python bench/gguf_start.py [--repeats 2] [--out DIR]

Each start is a fresh `tunelab generate smollm2-135m --prompt Hi --max-new-tokens 1` process (model load
dominates; one new token); cold starts get an empty $TUNELAB_CACHE, warm starts reuse the one the first cold
start filled. Writes bench/results/<cpu-kind>/gguf-start.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

COMMAND = ["generate", "smollm2-135m", "--prompt", "Hi", "--max-new-tokens", "1"]


def start(cache: Path) -> float:
    env = {**os.environ, "TUNELAB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    tunelab = Path(sys.executable).with_name("tunelab")
    t = time.perf_counter()
    proc = subprocess.run([str(tunelab), *COMMAND], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    if "Converting" in proc.stderr or "%|" in proc.stderr:
        raise RuntimeError(f"conversion progress bar shown without TUNELAB_PROGRESS=1:\n{proc.stderr[-2000:]}")
    return elapsed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    args = p.parse_args(argv)
    rep = common.machine(args.threads)
    load0 = common.load_average()
    cold, warm = [], []
    for _ in range(args.repeats):
        cache = Path(tempfile.mkdtemp(prefix="gguf-start-"))
        cold.append(start(cache))
        warm += [start(cache) for _ in range(2)]
    load1 = common.load_average()
    c, w = statistics.median(cold), statistics.median(warm)
    lines = ["# Start-up on the packaged GGUF model (smollm2-135m, Q4_1)", ""]
    lines += common.header(rep, load0, load1, "python bench/gguf_start.py " + " ".join(argv or sys.argv[1:]))
    lines += [
        f"Each row: one fresh `tunelab {' '.join(COMMAND)}` process, wall seconds (interpreter start, imports, model load, one token).",
        "",
        "| start | runs | median s | all runs s |",
        "|---|---|---|---|",
        f"| first (empty cache: de-quantise, write the plain model) | {len(cold)} | {c:.2f} | {', '.join(f'{x:.2f}' for x in cold)} |",
        f"| later (cache hit: load the plain safetensors) | {len(warm)} | {w:.2f} | {', '.join(f'{x:.2f}' for x in warm)} |",
        "",
        f"Later starts are **{c / w:.1f}x** faster than the first (target: >= 3x). No conversion progress bar was printed "
        "(they show with `TUNELAB_PROGRESS=1`).",
    ]
    text = "\n".join(lines) + "\n"
    (common.results_dir(args.out) / "gguf-start.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
