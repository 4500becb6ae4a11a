"""Atomic, resumable checkpoints.

A checkpoint is a folder ``checkpoints/step-N`` holding the trainable weights
(safetensors), optimizer and scheduler state, RNG states and the loop position.
It is written under a temporary name, flushed, then renamed; only after that does
``checkpoints/last.json`` (itself replaced atomically) point to it. A process killed
at any moment therefore leaves either the old or the new checkpoint as ``last``,
never a half-written one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

POINTER = "last.json"


def save(ckpt_root: Path, step: int, weights: dict[str, torch.Tensor], extra: dict[str, Any], keep: int = 1) -> Path:
    """Write checkpoint ``step`` atomically and point ``last.json`` at it; keep the newest ``keep``."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step}"
    tmp = ckpt_root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
    torch.save(extra, tmp / "state.pt")
    _fsync_dir_files(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_json_atomic(ckpt_root / POINTER, {"step": step, "path": final.name})
    _prune(ckpt_root, keep=keep, current=final.name)
    return final


def latest(ckpt_root: Path) -> Path | None:
    """The checkpoint ``last.json`` points to, or None if there is none yet."""
    pointer = ckpt_root / POINTER
    if not pointer.is_file():
        return None
    target = ckpt_root / json.loads(pointer.read_text())["path"]
    return target if (target / "state.pt").is_file() else None


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    weights = load_file(str(path / "weights.safetensors"))
    extra = torch.load(path / "state.pt", weights_only=False)
    return weights, extra


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir_files(folder: Path) -> None:
    for f in folder.iterdir():
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())


def _prune(ckpt_root: Path, keep: int, current: str) -> None:
    steps = sorted((p for p in ckpt_root.glob("step-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    for old in steps[:-keep]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root.glob(".step-*.tmp"):  # left by a process killed mid-save
        if stale.name != f".{current}.tmp":
            shutil.rmtree(stale, ignore_errors=True)
