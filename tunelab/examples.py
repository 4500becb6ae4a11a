"""The example configs shipped in the repository's examples/ folder, for `tunelab train` without arguments."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "examples"


def listing(root: Path = ROOT) -> list[tuple[str, str]]:
    """(path as the user would type it, first comment line) of every training example config under ``root``."""
    out = []
    for path in sorted(root.rglob("*.yaml")) if root.is_dir() else []:
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("serve:") or "\nserve:" in text:  # a `tunelab serve --config` file
            continue
        first = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), "")
        out.append((_shown(path), first))
    return out


def _shown(path: Path) -> str:
    """Relative to the working directory when that is shorter (the usual case: run from the checkout)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return rel if len(rel) < len(str(path)) else str(path)
