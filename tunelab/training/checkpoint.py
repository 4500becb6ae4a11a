"""Atomic, resumable checkpoints, what a finished run keeps, and consistent file modes.

A checkpoint is a folder ``checkpoints/step-N`` holding the trainable weights (safetensors) and
``state.pt``: optimizer and scheduler state, every process's RNG states, the loop position, the sampler's
and the callbacks' state. It is written under a temporary name, flushed, then renamed; only after that
does ``checkpoints/last.json`` (itself replaced atomically) point to it. A process killed at any moment
therefore leaves either the old or the new checkpoint as ``last``, never a half-written one.

Files are written with the modes the user's umask gives new files (safetensors alone would write 0600).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

POINTER = "last.json"
STATE = "state.pt"
WEIGHTS = "weights.safetensors"
KEEP = ("best+last", "last", "none", "all")  # see keep_after_finish


def save(ckpt_root: Path, step: int, weights: dict, extra: dict[str, Any], keep: int | None = 1) -> Path:
    """Write checkpoint ``step`` atomically and point ``last.json`` at it; keep the newest ``keep`` (None: all)."""
    import torch
    from safetensors.torch import save_file

    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step-{step}"
    tmp = ckpt_root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS))
    torch.save(extra, tmp / STATE)
    _fsync_dir_files(tmp)
    fix_modes(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_json_atomic(ckpt_root / POINTER, {"step": step, "path": final.name})
    _prune(ckpt_root, keep=keep, current=final.name)
    return final


def latest(ckpt_root: Path) -> Path | None:
    """The resumable checkpoint ``last.json`` points to, or None if there is none (yet, or any more)."""
    target = last_written(ckpt_root)
    return target if target is not None and (target / STATE).is_file() else None


def last_written(ckpt_root: Path) -> Path | None:
    """The newest checkpoint folder, resumable or not (a finished run keeps its weights without the state)."""
    pointer = Path(ckpt_root) / POINTER
    if not pointer.is_file():
        return None
    target = Path(ckpt_root) / json.loads(pointer.read_text())["path"]
    return target if (target / WEIGHTS).is_file() else None


def load(path: Path) -> tuple[dict, dict[str, Any]]:
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path / WEIGHTS))
    extra = torch.load(path / STATE, weights_only=False) if (path / STATE).is_file() else {}
    return weights, extra


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------- what a run keeps


def keep_after_finish(run_dir: Path, keep: str) -> int:
    """Prune a finished run's checkpoints per ``train.keep_checkpoints``; returns the bytes freed.

    best+last: ``best/`` and the last checkpoint's weights stay, optimizer/scheduler/RNG state goes (a
    finished run is never resumed); last: only the last checkpoint's weights; none: no checkpoints at all
    (``model/`` holds the best weights); all: nothing is removed. Leftovers of killed saves always go.
    """
    doomed = removable(run_dir, keep)
    freed = sum(folder_bytes(p) if p.is_dir() else p.stat().st_size for p in doomed)
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return freed


def removable(run_dir: Path, keep: str) -> list[Path]:
    """The files and folders ``keep_after_finish(run_dir, keep)`` removes."""
    if keep not in KEEP:
        raise ValueError(f"keep_checkpoints: '{keep}' is not one of {', '.join(KEEP)}")
    run_dir = Path(run_dir)
    ckpts, best = run_dir / "checkpoints", run_dir / "best"
    out = [p for p in [*ckpts.glob(".step-*.tmp"), *best.glob(".step-*.tmp"), run_dir / ".model.tmp"] if p.exists()]
    if keep == "none":
        out += [p for p in (ckpts, best) if p.exists()]
    elif keep in ("best+last", "last"):
        steps = _steps(ckpts)
        out += steps[:-1] + [p / STATE for p in steps[-1:] if (p / STATE).exists()]
        if keep == "last" and best.exists():
            out.append(best)
    return out


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


# ---------------------------------------------------------------- file modes


def umask() -> int:
    """The process umask (read without changing it where Linux reports it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def fix_modes(path: Path) -> None:
    """Give ``path`` (a file, or a folder and everything under it) the modes new files get: 0644 under umask 022."""
    path = Path(path)
    mask = umask()
    items = [path] + (list(path.rglob("*")) if path.is_dir() else [])
    for item in items:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


def _steps(ckpt_root: Path) -> list[Path]:
    return sorted((p for p in ckpt_root.glob("step-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))


def _fsync_dir_files(folder: Path) -> None:
    for f in folder.iterdir():
        with open(f, "rb") as handle:
            os.fsync(handle.fileno())


def _prune(ckpt_root: Path, keep: int | None, current: str) -> None:
    for old in _steps(ckpt_root)[:-keep] if keep else []:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root.glob(".step-*.tmp"):  # left by a process killed mid-save
        if stale.name != f".{current}.tmp":
            shutil.rmtree(stale, ignore_errors=True)
