"""The training loop: exact resume, crash-safe checkpoints, accumulation equals large batch, early stopping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import write_sentiment
from tunelab import config
from tunelab.recipes import finetune
from tunelab.training import checkpoint
from tunelab.training.callbacks import Callback


def _cfg(tmp_path: Path, model_dir: Path, out: str, *extra: str):
    data = write_sentiment(tmp_path / "train.tsv", n=96)
    return config.load(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data}",
            "data.text_column=sentence",
            f"output_dir={tmp_path / out}",
            "train.batch_size=8",
            "train.epochs=2",
            "train.lr=1e-3",
            "train.log_every=1",
            "train.precision=fp32",
            *extra,
        ],
    )


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    weights, _ = checkpoint.load(checkpoint.last_written(run_dir / "checkpoints"))
    return weights


class StopAt(Callback):
    """Callback that dies when the run reaches a step, as a second Ctrl-C (or a crash) would."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, ctx):
        if ctx.state.step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", ["full", "lora"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, tiny_bert_dir, method):
    straight = _cfg(tmp_path, tiny_bert_dir, "straight", f"method={method}", "train.save_every=3")
    finetune.run(straight, quiet=True, log=lambda m: None)
    broken = _cfg(tmp_path, tiny_bert_dir, "broken", f"method={method}", "train.save_every=3")
    with pytest.raises(KeyboardInterrupt):
        finetune.run(broken, quiet=True, log=lambda m: None, callbacks=(StopAt(7),))  # dies after the step-6 checkpoint
    assert checkpoint.latest(tmp_path / "broken" / "checkpoints").name == "step-6"
    finetune.run(broken, quiet=True, log=lambda m: None)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "broken")
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)
    # the resumed run's log has each step once, the killed run's extra lines were dropped
    steps = [r["step"] for r in finetune.report.read_log(tmp_path / "broken")[0]]
    assert steps == sorted(set(steps))


def test_killed_during_checkpoint_save_still_resumes(tmp_path, tiny_bert_dir, monkeypatch):
    cfg = _cfg(tmp_path, tiny_bert_dir, "run", "train.save_every=2")
    real_save = torch.save

    def dying_save(obj, path, *a, **k):  # the weights file of step 4 is written, then the process "dies"
        if "step-4" in str(path):
            Path(path).write_bytes(b"half a file")
            raise KeyboardInterrupt
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        finetune.run(cfg, quiet=True, log=lambda m: None)
    monkeypatch.setattr(torch, "save", real_save)
    assert checkpoint.latest(tmp_path / "run" / "checkpoints").name == "step-2"
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    assert final["steps"] == 22  # 96 rows - 10 dev = 86 -> 11 batches of 8, x 2 epochs
    assert not list((tmp_path / "run" / "checkpoints").glob(".step-*.tmp"))


def test_sigkill_at_random_moments_always_resumable(tmp_path, tiny_bert_dir):
    """A real process killed with SIGKILL (checkpoints every step, so kills land inside saves too) resumes to the same weights."""
    data = write_sentiment(tmp_path / "train.tsv", n=96)
    args = [
        f"model.name={tiny_bert_dir}",
        f"data.train={data}",
        "data.text_column=sentence",
        "train.batch_size=8",
        "train.epochs=2",
        "train.lr=1e-3",
        "train.precision=fp32",
        "train.save_every=1",
        "train.threads=1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "tunelab.cli", "train", "--quiet"]
    subprocess.run(cmd + args + [f"output_dir={tmp_path / 'ref'}"], env=env, check=True, capture_output=True)
    killed = 0
    for delay in (4.0, 5.5, 7.0):
        proc = subprocess.Popen(
            cmd + args + [f"output_dir={tmp_path / 'run'}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    done = subprocess.run(cmd + args + [f"output_dir={tmp_path / 'run'}"], env=env, capture_output=True, text=True)
    if (tmp_path / "run" / "metrics.json").is_file() and done.returncode != 0:
        assert "already holds a finished run" in done.stderr  # a kill came too late to interrupt anything
    else:
        assert done.returncode == 0, done.stderr
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "run")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)
    assert killed >= 1


def test_grad_accumulation_equals_large_batch(tmp_path, tiny_bert_dir):
    one = _cfg(tmp_path, tiny_bert_dir, "one", "train.max_steps=3", "train.max_grad_norm=null", "model.dropout=0")
    four = _cfg(
        tmp_path,
        tiny_bert_dir,
        "four",
        "train.max_steps=3",
        "train.grad_accum=4",
        "train.max_grad_norm=null",
        "model.dropout=0",
    )
    finetune.run(one, quiet=True, log=lambda m: None)
    finetune.run(four, quiet=True, log=lambda m: None)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "four")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=name)


def test_early_stopping_stops_and_keeps_best(tmp_path):
    """Scripted dev metrics: best at the 2nd evaluation, patience 2 -> stop at the 4th, best weights from step 4."""
    from tunelab.data.collate import pad_batch
    from tunelab.training import loop
    from tunelab.training.evaluation import Evaluator, Metric

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(12, 2))
    feats = [{"input_ids": [i % 10, (i + 1) % 10, (i + 2) % 10], "labels": i % 2} for i in range(32)]
    scores = iter([0.5, 0.9, 0.8, 0.7, 0.95, 0.99])
    snapshots = {}

    def loss(logits, batch):
        return torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum"), len(batch["labels"])

    class Snap(loop.Callback):
        def on_evaluate(self, ctx, metrics):
            snapshots[ctx.state.step] = ctx.model[2].weight.detach().clone()

    cfg = config.TrainConfig(
        epochs=10, batch_size=8, eval_every=2, early_stopping_patience=2, metric="accuracy", precision="fp32"
    )
    objective = loop.Objective(lambda m, b: m(b["input_ids"]), loss, lambda b: len(b["labels"]))
    scorer = Evaluator(1, lambda m, idx: [None for _ in idx], lambda results: {"accuracy": next(scores)})
    job = loop.Job(
        model,
        feats,
        objective,
        lambda b: pad_batch(b, 0),
        cfg,
        tmp_path,
        evaluator=scorer,
        metric=Metric("accuracy", higher_is_better=True),
        callbacks=(Snap(),),
        log=lambda m: None,
        quiet=True,
    )
    state = loop.train(job)
    assert state.stopped_early and state.step == 8
    assert state.best_step == 4 and state.best_metric == 0.9
    loop.load_best(model, tmp_path)
    assert torch.equal(model[2].weight, snapshots[4])
