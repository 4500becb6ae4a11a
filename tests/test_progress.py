"""Progress output: plain lines when stderr is not a terminal, a bar when it is; other libraries stay quiet."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from tunelab import progress

REPO = Path(__file__).resolve().parents[1]


def test_plain_lines_off_a_terminal_with_eta_and_no_carriage_returns():
    out = io.StringIO()
    bar = progress.bar(10, 0, stream=out, every_s=0.0)
    assert isinstance(bar, progress.Lines)
    for _ in range(4):
        bar.update(1)
        bar.set_postfix(loss="0.5000", tok_s="120")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in out.getvalue()
    assert lines[-1].startswith("step 4/10 (40%), loss=0.5000, tok_s=120, ") and "ETA" in lines[-1]


def test_lines_are_periodic_and_quiet_prints_nothing():
    out = io.StringIO()
    bar = progress.bar(1000, 0, stream=out, every_s=3600.0)
    for _ in range(1000):
        bar.update(1)
    assert out.getvalue() == ""  # nothing until every_s has passed
    quiet = progress.bar(10, 0, quiet=True, stream=out)
    quiet.update(10)
    assert out.getvalue() == ""


def test_a_terminal_gets_the_live_bar():
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            bar = progress.bar(5, 0, stream=tty)
            assert not isinstance(bar, progress.Lines)
            bar.close()
    finally:
        os.close(master)
        os.close(slave)


QUIET_PROBE = """
import sys, warnings
from tunelab import progress
progress.third_party(verbose=sys.argv[1] == "verbose")
from tqdm.auto import tqdm
for _ in tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):  # as transformers' GGUF loader does
    pass
from transformers import BertConfig, BertModel
BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8)).save_pretrained(sys.argv[2])
warnings.warn("a third-party notice", UserWarning)
"""


def test_other_libraries_bars_and_warnings_only_with_verbose(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in progress.QUIET_ENV and k != "TUNELAB_VERBOSE"
    }  # as a user's shell
    env["PYTHONPATH"] = str(REPO)
    quiet = subprocess.run(
        [sys.executable, "-c", QUIET_PROBE, "quiet", str(tmp_path / "a")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    verbose = subprocess.run(
        [sys.executable, "-c", QUIET_PROBE, "verbose", str(tmp_path / "b")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert quiet.stderr == ""
    for noise in ("Converting and de-quantizing", "Writing model shards", "a third-party notice"):
        assert noise in verbose.stderr


def test_help_and_import_do_not_import_torch():
    """Not timed (bench/startup.py measures the time): the parser and `import tunelab` must not pull torch in."""
    code = (
        "import sys, tunelab, tunelab.cli; p = tunelab.cli.build_parser(); p.parse_args(['config']); "
        "import tunelab.generation, tunelab.generation.config; print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "False", done.stderr
