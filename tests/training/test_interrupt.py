"""Ctrl-C / SIGTERM during `tunelab train` (real processes, real signals), resume fingerprints, what a run keeps."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import loop_args
from tunelab import cli, config
from tunelab.errors import TunelabError
from tunelab.recipes import finetune
from tunelab.training import checkpoint
from tunelab.training.callbacks import Callback

REPO = Path(__file__).resolve().parents[2]


def _start(args: list[str], out: Path, quiet: bool = False) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "TUNELAB_TCMALLOC": "0",
    }
    cmd = [sys.executable, "-m", "tunelab.cli", "train", *(["--quiet"] if quiet else []), *args, f"output_dir={out}"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(run: Path, steps: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until metrics.jsonl has ``steps`` training lines (the run is inside its loop)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        log = run / "metrics.jsonl"
        if log.is_file() and sum('"loss"' in ln for ln in log.read_text().splitlines()) >= steps:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("training did not start in time")


def _last_weights(run: Path) -> dict[str, torch.Tensor]:
    weights, _ = checkpoint.load(checkpoint.last_written(run / "checkpoints"))
    return weights


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_the_step_saves_and_resumes_exactly(tmp_path, tiny_bert_dir, sig, code):
    """No save_every: the only checkpoint is the one the signal writes. The message has its own line and says resumable."""
    args = loop_args(tmp_path, tiny_bert_dir, "train.max_steps=150")
    proc = _start(args, tmp_path / "run")
    _wait_for_steps(tmp_path / "run", 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = err.split("\n")
    final = [ln for ln in lines if "resumable from" in ln]
    assert len(final) == 1 and final[0].startswith("interrupted by") and "\r" not in final[0], err[-2000:]
    stopped = checkpoint.latest(tmp_path / "run" / "checkpoints")
    assert stopped is not None and str(stopped) in final[0]
    step = int(stopped.name.split("-")[1])
    assert 3 <= step < 150
    cfg = config.load(None, args + [f"output_dir={tmp_path / 'run'}"])
    finetune.run(cfg, quiet=True, log=lambda m: None)  # resume in this process
    finetune.run(cfg.model_copy(update={"output_dir": str(tmp_path / "ref")}), quiet=True, log=lambda m: None)
    _assert_same(_last_weights(tmp_path / "ref"), _last_weights(tmp_path / "run"))
    steps = [r["step"] for r in finetune.report.read_log(tmp_path / "run")[0]]
    assert steps == list(range(1, 151))  # each step logged once across the interruption


def test_second_ctrl_c_quits_at_once_and_the_previous_checkpoint_stays_valid(tmp_path, tiny_bert_dir):
    args = loop_args(tmp_path, tiny_bert_dir, "train.max_steps=400", "train.save_every=5")
    proc = _start(args, tmp_path / "run", quiet=True)
    _wait_for_steps(tmp_path / "run", 6, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resumable from" in err
    kept = checkpoint.latest(tmp_path / "run" / "checkpoints")
    checkpoint.load(kept)  # loads: not half-written
    resumed = finetune.run(config.load(None, args + [f"output_dir={tmp_path / 'run'}"]), quiet=True, log=lambda m: None)
    assert resumed["steps"] == 400


def test_interrupt_before_any_checkpoint_says_it_is_not_resumable(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    def ctrl_c(*args, **kwargs):  # Ctrl-C while the data is read, before training started
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune, "run", ctrl_c)
    assert cli.main(["train", "--quiet", *loop_args(tmp_path, tiny_bert_dir), f"output_dir={tmp_path / 'run'}"]) == 130
    err = capsys.readouterr().err
    assert "no checkpoint was written yet, so a rerun starts from the beginning" in err and "resumable" not in err


class DieAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, ctx):
        if ctx.state.step == self.step:
            raise KeyboardInterrupt


def test_resume_refuses_changed_training_data_unless_asked(tmp_path, tiny_bert_dir, capsys):
    args = loop_args(tmp_path, tiny_bert_dir, "train.max_steps=12", "train.save_every=3") + [
        f"output_dir={tmp_path / 'run'}"
    ]
    with pytest.raises(KeyboardInterrupt):
        finetune.run(config.load(None, args), quiet=True, log=lambda m: None, callbacks=(DieAt(5),))
    data = tmp_path / "train.tsv"
    rows = data.read_text().splitlines()
    data.write_text(
        "\n".join([rows[0]] + [r[:-1] + ("0" if r.endswith("1") else "1") for r in rows[1:]]) + "\n"
    )  # every label flipped
    with pytest.raises(
        TunelabError,
        match=r"cannot resume: .*train data \(.*train.tsv\) changed since the run started .*--resume-anyway",
    ):
        finetune.run(config.load(None, args), quiet=True, log=lambda m: None)
    assert cli.main(["train", "--quiet", *args]) == 2
    assert "--resume-anyway" in capsys.readouterr().err
    assert cli.main(["train", "--quiet", "--resume-anyway", *args]) == 0
    assert "continuing anyway" in capsys.readouterr().err


def test_resume_refuses_changed_config_unless_asked(tmp_path, tiny_bert_dir, capsys):
    args = loop_args(tmp_path, tiny_bert_dir, "train.max_steps=12", "train.save_every=3") + [
        f"output_dir={tmp_path / 'run'}"
    ]
    with pytest.raises(KeyboardInterrupt):
        finetune.run(config.load(None, args), quiet=True, log=lambda m: None, callbacks=(DieAt(5),))
    assert cli.main(["train", "--quiet", *args, "train.weight_decay=0.5"]) == 2
    assert "train.weight_decay: 0.01 -> 0.5" in capsys.readouterr().err
    assert cli.main(["train", "--quiet", "--resume-anyway", *args, "train.weight_decay=0.5"]) == 0


@pytest.mark.parametrize(
    "keep, left",
    [
        ("best+last", {"best", "checkpoints/step-12/weights.safetensors"}),
        ("last", {"checkpoints/step-12/weights.safetensors"}),
        ("none", set()),
        (
            "all",
            {"best", *(f"checkpoints/step-{s}/state.pt" for s in (4, 8, 11, 12))},
        ),  # 11: the end of epoch 1 (an evaluation)
    ],
)
def test_keep_checkpoints(tmp_path, tiny_bert_dir, keep, left):
    run = tmp_path / "run"
    args = loop_args(
        tmp_path, tiny_bert_dir, "train.max_steps=12", "train.save_every=4", f"train.keep_checkpoints={keep}"
    )
    finetune.run(config.load(None, args + [f"output_dir={run}"]), quiet=True, log=lambda m: None)
    files = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    for item in left:
        assert any(f == item or f.startswith(item + "/") for f in files), (item, sorted(files))
    state = {f for f in files if f.endswith("state.pt") and f.startswith("checkpoints")}
    assert state == ({f for f in left if f.endswith("state.pt")})
    if "best" not in left:
        assert not (run / "best").exists()
    assert (run / "model").is_dir()


def test_clean_frees_a_finished_run_and_refuses_an_unfinished_one(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    run = tmp_path / "run"
    args = loop_args(tmp_path, tiny_bert_dir, "train.max_steps=8", "train.save_every=2", "train.keep_checkpoints=all")
    finetune.run(config.load(None, args + [f"output_dir={run}"]), quiet=True, log=lambda m: None)
    before = checkpoint.folder_bytes(run)
    assert cli.main(["clean", str(run), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "would remove" in err and checkpoint.folder_bytes(run) == before
    assert cli.main(["clean", str(run)]) == 0
    assert "freed" in capsys.readouterr().err
    assert not (run / "checkpoints").exists() and not (run / "best").exists()
    monkeypatch.setattr("sys.stdin", io.StringIO("good fun movie\n"))
    assert cli.main(["predict", str(run)]) == 0  # the run still works from model/
    assert '"label"' in capsys.readouterr().out
    unfinished = tmp_path / "unfinished"
    with pytest.raises(KeyboardInterrupt):
        finetune.run(
            config.load(None, args + [f"output_dir={unfinished}"]),
            quiet=True,
            log=lambda m: None,
            callbacks=(DieAt(5),),
        )
    assert cli.main(["clean", str(unfinished)]) == 2
    assert "unfinished" in capsys.readouterr().err and checkpoint.latest(unfinished / "checkpoints") is not None


def test_file_modes_are_consistent(tmp_path, tiny_bert_dir):
    """Weights are written like every other file (safetensors alone would write 0600)."""
    run = tmp_path / "run"
    finetune.run(
        config.load(None, loop_args(tmp_path, tiny_bert_dir, "train.max_steps=2") + [f"output_dir={run}"]),
        quiet=True,
        log=lambda m: None,
    )
    mask = checkpoint.umask()
    modes = {str(p.relative_to(run)): p.stat().st_mode & 0o777 for p in run.rglob("*") if p.is_file()}
    assert "model/model.safetensors" in modes and any(k.endswith("weights.safetensors") for k in modes)
    assert set(modes.values()) == {0o666 & ~mask}, modes
