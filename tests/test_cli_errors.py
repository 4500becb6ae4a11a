"""Every documented CLI error, run as a user would: one line on stderr, no traceback, exit status 2.

The README's "Errors and exit status" table lists these; each case's message must appear there too, so the
table and the behaviour cannot drift apart. Most cases run in-process (fast); the ones about processes
(a closed stdout pipe, a bare `tunelab train`) run the real command.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunelab import cli

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert_dir):
    """A finished tiny classification run (2 steps) and its training file."""
    from tests.conftest import train_tiny

    run = train_tiny(tmp_path_factory.mktemp("errors"), tiny_bert_dir)
    return run, run.parent / "train.tsv"


def _mixed_labels(tmp: Path) -> Path:
    lines = ["sentence\tlabel"] + [
        f"good fun movie {i}\tpositive" if i % 2 else f"bad dull plot {i}\tnegative" for i in range(63)
    ]
    lines.insert(8, "an odd row\t1")  # line 9: a stray number among words
    path = tmp / "mixed.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _wikiann_style(tmp: Path) -> Path:
    path = tmp / "train"
    path.write_text("en:Ada\tB-PER\nen:wrote\tO\n\nen:Paris\tB-LOC\nen:is\tO\n")
    return path


# (id, argv builder(ctx) -> list[str], message fragment that must be in stderr and in the README)
CASES = [
    ("unknown-key", lambda c: ["train", "train.lrr=1"], "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    ("mapping-value", lambda c: ["train", "task=token_classification", "task.token_prefix={en: 1}"], "quote the value"),
    (
        "output-dir-is-a-file",
        lambda c: c.train(f"output_dir={c.file}"),
        "is a file, not a folder; choose another output_dir",
    ),
    (
        "unknown-alias",
        lambda c: c.train("model.name=minilm-l12", f"output_dir={c.tmp / 'a'}"),
        "not a packaged alias (did you mean 'minilm-l6'?)",
    ),
    (
        "max-length-above-limit",
        lambda c: c.train("model.max_length=1024", f"output_dir={c.tmp / 'b'}"),
        "is above the limit of model",
    ),
    (
        "stray-label",
        lambda c: c.train(f"data.train={_mixed_labels(c.tmp)}", f"output_dir={c.tmp / 'c'}"),
        "label '1' is a number while 63 of 64 rows have word labels (line 9)",
    ),
    (
        "wikiann-prefix",
        lambda c: [
            "train",
            "task=token_classification",
            f"model.name={c.bert}",
            f"data.train={_wikiann_style(c.tmp)}",
            f"output_dir={c.tmp / 'd'}",
        ],
        "(a WikiANN-style language prefix); set task.token_prefix=en:",
    ),
    (
        "unknown-format",
        lambda c: ["predict", str(c.run), "--data", str(c.touch("texts.xlsx"))],
        "or set data.format=csv",
    ),
    (
        "txt-has-no-labels",
        lambda c: ["eval", str(c.run), "--data", str(c.touch("notes.txt"))],
        "read as plain text (one text per line), which has no labels",
    ),
    (
        "predict-only-data-overrides",
        lambda c: ["predict", str(c.run), "train.lr=1"],
        "takes only data.* and task.* option overrides",
    ),
    (
        "wrong-column",
        lambda c: ["eval", str(c.run), "--data", str(c.data), "--text-column", "sentense"],
        "data.text_column: expected a column 'sentense', found none in the header",
    ),
    (
        "empty-prompt",
        lambda c: ["generate", str(c.llama), "--prompt", ""],
        "--prompt: empty; give the text to continue",
    ),
    (
        "zero-new-tokens",
        lambda c: ["generate", str(c.llama), "--prompt", "hi", "--max-new-tokens", "0"],
        "max_new_tokens: Input should be greater than or equal to 1",
    ),
    (
        "greedy-and-sampling",
        lambda c: ["generate", str(c.llama), "--prompt", "hi", "--temperature", "0", "--do-sample"],
        "temperature 0 means greedy decoding; drop do_sample or give a temperature above 0",
    ),
    (
        "port-in-use",
        lambda c: ["serve", str(c.llama), "--port", str(c.busy_port)],
        "is already in use; choose another with --port",
    ),
    (
        "unknown-section",
        lambda c: ["config", "--section", "nope"],
        "--section nope: unknown; sections: task, run, model",
    ),
]


class Ctx:
    def __init__(self, tmp: Path, bert: Path, llama: Path, run: Path, data: Path, busy_port: int):
        self.tmp, self.bert, self.llama, self.run, self.data, self.busy_port = tmp, bert, llama, run, data, busy_port
        self.file = tmp / "notes.md"
        self.file.write_text("my notes")

    def train(self, *extra: str) -> list[str]:
        return [
            "train",
            "--quiet",
            f"model.name={self.bert}",
            f"data.train={self.data}",
            "data.text_column=sentence",
            "train.max_steps=1",
            *extra,
        ]

    def touch(self, name: str) -> Path:
        path = self.tmp / name
        path.write_text("a text\nanother text\n")
        return path


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_documented_error_is_one_line_exit_2_and_in_the_readme(
    case, tmp_path, monkeypatch, capsys, tiny_bert_dir, tiny_llama_dir, trained
):
    _, build, fragment = case
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        ctx = Ctx(tmp_path, tiny_bert_dir, tiny_llama_dir, trained[0], trained[1], busy.getsockname()[1])
        code = cli.main(build(ctx))
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 2, err
    assert "Traceback" not in err and last.startswith("error: ") and fragment in last, err
    assert not [ln for ln in err.strip().splitlines()[:-1] if ln.startswith("error")], err
    assert "serve: loaded" not in err  # a port in use is found before any model loads
    assert fragment in README, f"README's error table lacks: {fragment}"


def test_output_dir_that_cannot_be_written_is_one_line(tmp_path, capsys, tiny_bert_dir, trained):
    target = Path("/sys/tunelab-run") if os.geteuid() == 0 else tmp_path / "ro" / "run"
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
    elif not Path("/sys").is_dir():
        pytest.skip("needs /sys (root ignores permission bits)")
    code = cli.main(
        [
            "train",
            "--quiet",
            f"model.name={tiny_bert_dir}",
            f"data.train={trained[1]}",
            "data.text_column=sentence",
            f"output_dir={target}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: output_dir {target}: cannot write in ") and err.count("\n") == 1, err
    assert "cannot write in" in README


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    """The real command in a child process (no tcmalloc re-exec, offline)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TUNELAB_TCMALLOC": "0"}
    return subprocess.run(
        [sys.executable, "-m", "tunelab.cli", *args], env=env, capture_output=True, text=True, timeout=120, **kw
    )


def test_bare_train_prints_usage_and_examples_and_trains_nothing(tmp_path):
    done = _run(["train"], cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        done.stderr.startswith("usage: tunelab train CONFIG.yaml")
        and "examples/classification/demo.yaml" in done.stderr
    )
    assert not any(tmp_path.iterdir())  # no runs/run appeared


@pytest.mark.parametrize("args", [["config"], ["train", "--help"]])
def test_stdout_closed_early_is_quiet(args):
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already exited: every write fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tunelab.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO), "TUNELAB_TCMALLOC": "0"},
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == "", done.stderr


def test_ctrl_c_of_an_inference_command_says_interrupted_not_resume(tmp_path, trained):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TUNELAB_TCMALLOC": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "predict", str(trained[0])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    proc.stdin.write("a good fun movie\n")  # then predict waits for the rest of stdin
    proc.stdin.flush()
    time.sleep(3)  # past argument parsing (0.2 s): the interrupt lands inside the command, as a user's would
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err and "resume" not in err
