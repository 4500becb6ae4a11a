"""bench/speed.py --smoke: every side of a scenario runs a few steps on tiny models and the report is written (no timing claims)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("scenario", ["instruct-lora", "sst2-full"])
def test_speed_smoke(tmp_path, tiny_llama_dir, shared_data, scenario):
    """Tiny Llama for the LM scenario; minilm-l6 (22M, packaged) for SST-2, whose text the tiny word-level BERT cannot tokenise."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "speed.py"),
            "--smoke",
            "--scenario",
            scenario,
            "--threads",
            "1",
            "--model-lm",
            str(tiny_llama_dir),
            "--model-cls",
            "minilm-l6",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-12000:]
    text = (out / f"{scenario}.md").read_text()
    assert "| tunelab (defaults) |" in text and "HF Trainer+PEFT, careful" in text and "seeds' naive loop" in text
    assert "Correctness guard" in text and "nan" not in text.lower()
