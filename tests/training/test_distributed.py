"""Several processes through the real launchers (torchrun, accelerate launch) on CPU with gloo, tiny model.

Two processes with the same global batch take exactly the steps one process takes; only the main process
writes (one metrics.jsonl line per step); a 2-process run stopped by Ctrl-C resumes on one process and ends
equal to an uninterrupted run. The example accelerate configs (multi-node, FSDP, DeepSpeed) load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import loop_args
from tunelab import config
from tunelab.recipes import finetune
from tunelab.training import checkpoint

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env() -> dict:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "TUNELAB_TCMALLOC": "0",
        "MASTER_PORT": str(29500 + os.getpid() % 1000),
    }


def _weights(run: Path) -> dict[str, torch.Tensor]:
    weights, _ = checkpoint.load(checkpoint.last_written(run / "checkpoints"))
    return weights


def _assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)


def _train_log(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_two_processes_equal_one_process(tmp_path, tiny_bert_dir):
    """accelerate launch (its torch.distributed launcher; tunelab picks gloo when there is no GPU)."""
    args = loop_args(tmp_path, tiny_bert_dir, "train.max_steps=14", "train.grad_accum=2")
    cmd = [
        str(BIN / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        _env()["MASTER_PORT"],
        "-m",
        "tunelab",
        "train",
        "--quiet",
        *args,
        f"output_dir={tmp_path / 'two'}",
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stderr.count("done: dev") == 1  # only the main process talks
    finetune.run(config.load(None, args + [f"output_dir={tmp_path / 'one'}"]), quiet=True, log=lambda m: None)
    _assert_close(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    one, two = _train_log(tmp_path / "one"), _train_log(tmp_path / "two")
    assert [r["step"] for r in two] == list(range(1, 15))  # one line per step: only the main process writes
    assert [r["loss"] for r in two] == pytest.approx(
        [r["loss"] for r in one], rel=1e-5
    )  # the global loss, not a shard's
    final_one = json.loads((tmp_path / "one" / "metrics.json").read_text())["dev"]
    final_two = json.loads((tmp_path / "two" / "metrics.json").read_text())[
        "dev"
    ]  # evaluation gathered from both processes
    assert final_two["accuracy"] == final_one["accuracy"] and final_two["loss"] == pytest.approx(
        final_one["loss"], rel=1e-5
    )


def test_two_processes_stopped_by_ctrl_c_resume_on_one(tmp_path, tiny_bert_dir):
    """torchrun; Ctrl-C reaches both workers (and torchrun, which forwards it): they agree on the step, save, stop.

    LoRA: under full fine-tuning the attention key biases (whose true gradient is zero) follow Adam-amplified
    rounding noise; after 120 steps it differs by ~5e-5 whenever the summation order changes (measured: one
    process with grad_accum 1 vs 2 gives 4.6e-5 there and < 1e-6 on every other tensor)."""
    args = loop_args(tmp_path, tiny_bert_dir, "train.max_steps=120", "method=lora")
    run = tmp_path / "run"
    cmd = [
        str(BIN / "torchrun"),
        "--nproc_per_node",
        "2",
        "--master_port",
        _env()["MASTER_PORT"],
        "-m",
        "tunelab",
        "train",
        "--quiet",
        *args,
        f"output_dir={run}",
    ]
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    end = time.monotonic() + 180
    while not ((run / "metrics.jsonl").is_file() and len(_train_log(run)) >= 3):
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
    _, err = proc.communicate(timeout=120)
    assert "resumable from" in err, err[-4000:]
    stopped = checkpoint.latest(run / "checkpoints")
    saved = torch.load(stopped / "state.pt", weights_only=False)
    assert saved["processes"] == 2 and len(saved["rng"]) == 2  # every process's random state
    assert int(stopped.name.split("-")[1]) < 120
    cfg = config.load(None, args + [f"output_dir={run}"])
    finetune.run(cfg, quiet=True, log=lambda m: None)  # resumed on one process
    finetune.run(cfg.model_copy(update={"output_dir": str(tmp_path / "ref")}), quiet=True, log=lambda m: None)
    _assert_close(_weights(tmp_path / "ref"), _weights(run))
    assert [r["step"] for r in _train_log(run)] == list(range(1, 121))


ACCELERATE_CONFIGS = sorted((REPO / "examples" / "distributed").glob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in ACCELERATE_CONFIGS if p.name != "train.yaml"], ids=lambda p: p.name)
def test_example_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    cfg = load_config_from_file(str(path))
    expected = {
        "multi_node.yaml": DistributedType.MULTI_GPU,
        "fsdp.yaml": DistributedType.FSDP,
        "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
        "deepspeed_zero3.yaml": DistributedType.DEEPSPEED,
    }[path.name]
    assert cfg.distributed_type == expected and cfg.num_processes > 1
    if expected == DistributedType.FSDP:
        assert cfg.fsdp_config["fsdp_use_orig_params"] is True  # tunelab saves trainable weights by their names
    if expected == DistributedType.DEEPSPEED:
        assert cfg.deepspeed_config["gradient_accumulation_steps"] == 1 and cfg.deepspeed_config["zero_stage"] in (2, 3)
    if path.name == "multi_node.yaml":
        assert cfg.num_machines == 2 and cfg.main_process_ip


def test_example_training_config_for_several_processes_loads():
    cfg = config.load(REPO / "examples" / "distributed" / "train.yaml")
    assert cfg.train.batch_size % 2 == 0 and cfg.train.save_every


def test_a_single_process_accelerate_launch_is_named(monkeypatch):
    """`accelerate launch --num_processes 2` on a machine without GPUs starts one process: tunelab says so."""
    from tunelab.training import distributed

    monkeypatch.setenv("ACCELERATE_USE_CPU", "False")  # set by accelerate's single-process launcher
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    argv = ["python", "accelerate", "launch", "--num_processes", "2", "-m", "tunelab", "train", ""]
    assert "started ONE training process" in distributed.launcher_warning(argv)
    assert distributed.launcher_warning(["python", "accelerate", "launch", "-m", "tunelab", ""]) is None
