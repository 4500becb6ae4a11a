"""Tabular inputs the Hugging Face ecosystem stores: Parquet and Arrow files, ``datasets`` ``save_to_disk`` folders,
and hub dataset ids ``hf://datasets/OWNER/NAME[/CONFIG][@REVISION][:SPLIT]`` (split ``train`` when none is given).

Each becomes (column names, records as dicts); ``sources`` then reads the records with the same column options and
per-row checks as JSON rows. A row's number in messages (``file:7:``) is its 1-based position in the table.
pyarrow reads files; ``datasets`` (optional: ``pip install datasets``) reads save_to_disk folders and hub ids.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tunelab.errors import DataError

FORMATS = ("parquet", "arrow")
SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}
HUB = re.compile(
    r"^hf://datasets/(?P<repo>[^@:/\s]+/[^@:/\s]+|[^@:/\s]+)(?:/(?P<config>[^@:/\s]+))?(?:@(?P<rev>[^:\s]+))?(?::(?P<split>[\w.\-\[\]%:]+))?$"
)


def is_hub(path: str) -> bool:
    return path.startswith("hf://")


def is_saved_dataset(path: str) -> bool:
    """A folder written by ``Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``)."""
    folder = Path(path)
    return folder.is_dir() and any((folder / n).is_file() for n in ("state.json", "dataset_dict.json"))


def table_format(path: str) -> str | None:
    """parquet or arrow from the file's suffix, else None."""
    return SUFFIXES.get(Path(path).suffix.lower())


def read(path: str, fmt: str) -> tuple[list[str], list[dict]]:
    """(column names, rows) of a parquet/arrow file, a save_to_disk folder or a hub id."""
    if is_hub(path):
        return _columns_and_rows(_hub(path))
    if fmt == "dataset":
        return _columns_and_rows(_saved(path))
    return _columns_and_rows(_file(path, fmt))


def _columns_and_rows(table) -> tuple[list[str], list[dict]]:
    """A pyarrow Table (or a datasets.Dataset, which holds one) as column names and plain Python rows."""
    import pyarrow as pa

    arrow = table if isinstance(table, pa.Table) else table.with_format("arrow")[:]
    return list(arrow.column_names), arrow.to_pylist()


def _file(path: str, fmt: str):
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        with pa.memory_map(path, "r") as source:  # Arrow IPC: the file format (feather v2), else the stream format
            try:
                return pa.ipc.open_file(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: expected a readable {fmt} file, found: {exc}") from None


def _datasets(what: str):
    try:
        import datasets
    except ImportError:
        raise DataError(f"{what}: reading it needs the `datasets` package: pip install datasets") from None
    return datasets


def _saved(path: str):
    datasets = _datasets(path)
    folder = Path(path)
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        raise DataError(
            f"{path}: a DatasetDict folder with splits {', '.join(splits)}; give one split's folder, e.g. "
            f"{folder / (splits[0] if splits else 'train')}"
        )
    try:
        return datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises many kinds for a damaged folder
        raise DataError(f"{path}: expected a datasets save_to_disk folder, found: {exc}") from None


def parse_hub(path: str) -> dict:
    """The parts of ``hf://datasets/OWNER/NAME[/CONFIG][@REVISION][:SPLIT]``; DataError explaining the form."""
    m = HUB.match(path)
    if m is None:
        raise DataError(
            f"{path}: expected a hub dataset id hf://datasets/OWNER/NAME[/CONFIG][@REVISION][:SPLIT], "
            "e.g. hf://datasets/stanfordnlp/sst2:validation"
        )
    return {"name": m["repo"], "config": m["config"], "revision": m["rev"], "split": m["split"] or "train"}


def _hub(path: str):
    parts = parse_hub(path)
    datasets = _datasets(path)
    try:
        return datasets.load_dataset(parts["name"], parts["config"], split=parts["split"], revision=parts["revision"])
    except Exception as exc:  # offline, unknown name, unknown split: each is reported with where the cache is
        cache = datasets.config.HF_DATASETS_CACHE
        raise DataError(
            f"{path}: could not load {parts['name']} (split {parts['split']}) from the hub or from the cache "
            f"{cache}: {type(exc).__name__}: {str(exc)[:300]}. Offline (HF_HUB_OFFLINE=1 or no network), only "
            "datasets already in that cache load; or save it with datasets' save_to_disk and give the folder"
        ) from None
