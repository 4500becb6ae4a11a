"""The source and the result of a compression or export step.

The source is a run folder rebuilt as a plain transformers model (a mergeable method folded in; a pruned run as
pruned). The result is a new run folder: the source's config and labels, the new ``model/`` with its
``format.json``, ``cost.json``/``cost.md`` (source vs result, measured here) and ``metrics.json``. It is built
in a hidden sibling folder and renamed into place at the end, so a failed step leaves nothing behind and never
touches an existing folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from tunelab import config as config_mod
from tunelab import runs
from tunelab.errors import TunelabError
from tunelab.export import formats

# formats whose model is a plain transformers model that another step can start from
PLAIN_SOURCES = (formats.METHOD, "pruned")


def load_source(run_dir: str | Path, step: str):
    """(LoadedRun, plain model, source format name) of a run that ``step`` (quantize/prune/export) can start from."""
    from tunelab.recipes import merge

    run_dir = runs.check_run_dir(Path(run_dir))
    fmt = formats.read(run_dir)["format"]
    if fmt not in PLAIN_SOURCES:
        raise TunelabError(
            f"{run_dir}: is a {fmt} run; {step} starts from a training run or a pruned run (the {fmt} run's own source)"
        )
    runs.check_single_model(run_dir, step)
    loaded = runs.load_run(run_dir, backend="torch")
    model = merge.plain_model(loaded, run_dir) if fmt == formats.METHOD else loaded.model
    return loaded, model.eval(), fmt


class Output:
    """A result run folder under construction (use as a context manager; ``finish`` moves it into place)."""

    def __init__(self, out: str | Path, source: str | Path):
        self.out, self.source = Path(out), Path(source)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise TunelabError(
                f"{self.out}: exists and is not empty; choose a new or empty folder (nothing was written)"
            )
        if self.out.resolve() == self.source.resolve():
            raise TunelabError(f"{self.out}: is the source run; choose another folder")
        self.tmp = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        self.model_dir = self.tmp / "model"

    def __enter__(self) -> "Output":
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.model_dir.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)  # after finish() it is gone already

    def finish(self, info: dict, cost: dict, report_md: str, dev_metrics: dict) -> Path:
        """Write the format record, config, labels, cost and metrics, then move the folder into place."""
        formats.write(self.model_dir, info)
        cfg = runs.read_config(self.source)
        cfg.output_dir = str(self.out)
        (self.tmp / "config.yaml").write_text(config_mod.dump(cfg), encoding="utf-8")
        for name in ("labels.json", "task_state.json"):  # what evaluate/predict need besides the weights
            if (self.source / name).is_file():
                shutil.copy2(self.source / name, self.tmp / name)
        record = {
            "command": " ".join(["tunelab", *sys.argv[1:]]) if sys.argv else "",
            "source_run": str(self.source),
            **cost,
        }
        (self.tmp / "cost.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        (self.tmp / "cost.md").write_text(report_md + "\n", encoding="utf-8")
        metrics = {"dev": dev_metrics, "made_by": info, "source_run": str(self.source)}
        (self.tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
        if self.out.exists():
            self.out.rmdir()  # checked empty in __init__
        self.tmp.rename(self.out)
        return self.out


def report(title: str, rows: list[tuple[str, ...]], machine: dict, notes: list[str] = ()) -> str:
    """cost.md: the comparison table, where it was measured, and notes."""
    from tunelab.compress.cost import table

    lines = [
        f"# {title}",
        "",
        table(rows),
        "",
        f"Measured on {machine['cpu']} ({' '.join(machine['flags'])}), {machine['torch_threads']} torch threads, "
        f"load average {machine.get('load_average')} (other processes slow both sides, not always alike).",
    ]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines)
