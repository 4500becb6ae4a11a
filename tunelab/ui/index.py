"""The runs folder as the dashboard sees it: safe path resolution, run summaries, metrics records, config diffs.

Everything here reads files only (no torch); a run is any folder with config.yaml under the runs root, a
`tunelab compare` folder is one with compare.json. A run's id is its path relative to the root with '/'.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml

from tunelab import runstate
from tunelab.errors import TunelabError
from tunelab.tasks import TASKS

MAX_DEPTH = 4  # runs/<compare>/<method> is depth 2; deeper trees are not scanned
NOT_RUNS = {"mlruns", "tensorboard", "trackio", "model", "checkpoints", "best"}  # tracker stores and run internals
SERVED_FILES = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".yaml": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


class Forbidden(TunelabError):
    """A path outside the runs folder (or a file kind the dashboard does not serve)."""


class NotFound(TunelabError):
    """No run or file by that name."""


def resolve(root: Path, rel: str) -> Path:
    """``root/rel`` if it stays inside ``root`` after resolving '..' and symlinks; Forbidden otherwise."""
    if "\x00" in rel or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise Forbidden(f"'{rel}': paths must be relative to the runs folder")
    base = root.resolve()
    path = (base / rel).resolve()
    if path != base and base not in path.parents:
        raise Forbidden(f"'{rel}': outside the runs folder")
    return path


def run_dir(root: Path, run_id: str) -> Path:
    path = resolve(root, run_id)
    if not (path / "config.yaml").is_file():
        raise NotFound(f"no run '{run_id}' in {root}")
    return path


def run_file(root: Path, run_id: str, name: str) -> tuple[Path, str]:
    """(path, media type) of a file a run page may show; model weights and checkpoints are never served."""
    folder = run_dir(root, run_id)
    path = resolve(folder, name)
    if (
        folder.resolve() not in path.parents
        or path.suffix not in SERVED_FILES
        or path.parent.name in ("model", "checkpoints")
    ):
        raise Forbidden(f"'{name}': not a file the dashboard serves")
    if not path.is_file():
        raise NotFound(f"run '{run_id}' has no file '{name}'")
    return path, SERVED_FILES[path.suffix]


def scan(root: Path) -> tuple[list[Path], list[Path]]:
    """(run folders, compare folders) under root, sorted; hidden folders and run internals are skipped."""
    runs, compares = [], []
    base = root.resolve()
    if not base.is_dir():
        return runs, compares
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        depth = len(here.relative_to(base).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in NOT_RUNS and depth < MAX_DEPTH)
        if "compare.json" in filenames:
            compares.append(here)
        if "config.yaml" in filenames and here != base:
            runs.append(here)
            dirnames[:] = []  # a run's own folders (model, checkpoints, best) hold no runs
    return runs, compares


def read_records(path: Path, start: int = 0) -> tuple[list[dict], int]:
    """metrics.jsonl records from byte offset ``start``; returns (records, next offset). A partial last line waits."""
    if not path.is_file():
        return [], 0
    if path.stat().st_size < start:  # truncated: a resumed run drops the lines past its checkpoint; read again
        start = 0
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records, start + end


def _yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _name(section) -> str | None:
    return section.get("name") if isinstance(section, dict) else section


def summary(root: Path, folder: Path) -> dict:
    """One runs-table row: what, how it went, the headline metric, size of the trained part, when and how long."""
    cfg = _yaml(folder / "config.yaml")
    final = _json(folder / "metrics.json")
    status = runstate.read_status(folder)
    state, reason = runstate.state(folder)
    train = cfg.get("train") or {}
    task = _name(cfg.get("task")) or "classification"
    metric = train.get("metric")
    trainable, total = (
        final.get("trainable_parameters", status.get("trainable_parameters")),
        final.get("total_parameters", status.get("total_parameters")),
    )
    started = status.get("started") or (folder / "config.yaml").stat().st_mtime
    if final:  # finished: metrics.json has it all (the table never re-reads a finished run's whole log)
        value, value_kind, step = (final.get("dev") or {}).get(metric), "best", final.get("steps", 0)
    else:
        records, _ = read_records(folder / "metrics.jsonl")
        dev = [r for r in records if metric and f"dev/{metric}" in r]
        value, value_kind = (dev[-1][f"dev/{metric}"] if dev else None), "last eval"
        step = max((r.get("step", 0) for r in records), default=0)
    if state == "finished":
        seconds = final.get("train_seconds")
    elif state == "running":
        seconds = time.time() - started
    else:
        seconds = (status.get("ended") or started) - started if status.get("ended") else None
    return {
        "id": folder.resolve().relative_to(root.resolve()).as_posix(),
        "name": folder.name,
        "task": task,
        "generates": task in TASKS and TASKS[task].generates,  # the playground chats with it instead of predicting
        "model": (cfg.get("model") or {}).get("name"),
        "method": _name(cfg.get("method")),
        "state": state,
        "reason": reason,
        "resumable": runstate.resumable(folder),
        "metric": metric,
        "value": value,
        "value_kind": value_kind,
        "trainable": trainable,
        "total": total,
        "trainable_pct": round(100 * trainable / total, 4) if trainable and total else None,
        "seconds": round(seconds, 1) if seconds is not None else None,
        "started": started,
        "step": step,
    }


def list_runs(root: Path) -> dict:
    runs, compares = scan(root)
    rows = [summary(root, r) for r in runs]
    groups = [
        {"id": c.resolve().relative_to(root.resolve()).as_posix() or ".", "rows": _compare_rows(c / "compare.json")}
        for c in compares
    ]
    return {"root": str(root), "runs": rows, "compares": groups}


def _compare_rows(path: Path) -> list:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return rows if isinstance(rows, list) else []


def detail(root: Path, run_id: str) -> dict:
    """Everything a run page shows, in one response (files are fetched separately)."""
    folder = run_dir(root, run_id)
    records, offset = read_records(folder / "metrics.jsonl")
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in SERVED_FILES)
    return {
        "summary": summary(root, folder),
        "config": _yaml(folder / "config.yaml"),
        "config_text": (folder / "config.yaml").read_text(encoding="utf-8"),
        "final": _json(folder / "metrics.json"),
        "records": records,
        "offset": offset,
        "report": (folder / "report.md").read_text(encoding="utf-8") if (folder / "report.md").is_file() else None,
        "log": tail(folder / runstate.LOG),
        "files": files,
        "status": runstate.read_status(folder),
    }


def tail(path: Path, max_bytes: int = 64_000) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(size - max_bytes, 0))
        return f.read().decode("utf-8", errors="replace")


def flatten(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def compare(root: Path, run_ids: list[str]) -> dict:
    """Curves, headline numbers and the config keys that differ between the given runs."""
    if not 1 <= len(run_ids) <= 20:
        raise TunelabError("compare: pick between 1 and 20 runs")
    runs = []
    for rid in run_ids:
        folder = run_dir(root, rid)
        runs.append(
            {
                "summary": summary(root, folder),
                "records": read_records(folder / "metrics.jsonl")[0],
                "config": flatten(_yaml(folder / "config.yaml")),
            }
        )
    keys = sorted(set().union(*(r["config"] for r in runs)))
    diff = [
        {"key": k, "values": [r["config"].get(k) for r in runs]}
        for k in keys
        if len({json.dumps(r["config"].get(k), sort_keys=True) for r in runs}) > 1 and k != "output_dir"
    ]
    for r in runs:
        del r["config"]
    return {"runs": runs, "diff": diff}
