"""`tunelab clean RUN_DIR [--keep none|last|best+last] [--force] [--dry-run]`: free the space a run no longer needs.

A finished run is used through ``model/`` (eval, predict, serve, merge), so its checkpoints only matter
for inspection: ``--keep`` says what stays (default: none). An unfinished run's last checkpoint is what
lets it resume, so cleaning one needs ``--force``. Leftovers of killed saves are always removed.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.training import checkpoint


def run(run_dir: str | Path, keep: str = "none", force: bool = False, dry_run: bool = False, log=print) -> int:
    """Prune ``run_dir`` per ``keep``; returns the bytes freed (or that would be, with ``dry_run``)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise TunelabError(f"{run_dir}: not a tunelab run folder (no config.yaml)")
    finished = (run_dir / "metrics.json").is_file()
    if not finished and not force:
        raise TunelabError(
            f"{run_dir}: the run is unfinished; cleaning it removes the checkpoint it resumes from; add --force to clean anyway"
        )
    if dry_run:
        doomed = checkpoint.removable(run_dir, keep)
        for path in doomed:
            log(f"would remove {path}")
        freed = sum(checkpoint.folder_bytes(p) if p.is_dir() else p.stat().st_size for p in doomed)
    else:
        freed = checkpoint.keep_after_finish(run_dir, keep)
    log(
        f"{run_dir}: {'would free' if dry_run else 'freed'} {freed / 2**20:.1f} MiB (kept: {keep}{'' if finished else ', run no longer resumable'})"
    )
    return freed
