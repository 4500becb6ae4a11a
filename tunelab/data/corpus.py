"""What the data commands read: a train config, or files plus options, turned into items with file:line.

``tunelab data audit|clean|scrub|augment`` take ``CONFIG.yaml [key=value ...]`` (train/dev/test files and
every reader option from the config, exactly as training reads them) or ``FILE [FILE [FILE]] [key=value ...]``
(train, dev, test in that order; options as config overrides such as ``data.text_column=sentence`` or
``task.token_prefix=en:``). Rows are read by ``Task.read`` with ``data.on_error: skip``, so a bad row becomes a
finding with its line (``Table.skipped``) instead of stopping the audit.

The toolkit handles rows by their shape, the task's declared ``row_kind`` (``tunelab.tasks.base.ROW_KINDS``):
``text`` (sources.Row), ``tokens`` (conll.Sentence) and ``conversation`` (templates.Example). Each module keeps
one function per kind in a table keyed by it (``SPLIT_BY_KIND`` here); it never asks for a task's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tunelab import config as config_mod
from tunelab.errors import ConfigError, DataError
from tunelab.tasks.base import Table, Task

SPLITS = ("train", "dev", "test")


@dataclass
class Item:
    """One example as the data commands see it."""

    split: str
    source: str
    line: int
    text: (
        str  # what duplicates, leakage and junk checks compare (classification: text [+ pair]; NER: tokens; LM: prompt)
    )
    label: str | None  # class label (classification only)
    row: object  # the reader's row: sources.Row, conll.Sentence or templates.Example
    target: str | None = None  # instruction data: the last assistant reply


@dataclass
class Split:
    name: str
    path: str
    fmt: str  # resolved file format (csv, tsv, json, jsonl, conll, text)
    items: list[Item]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    lines_as: str = "splitlines"  # how the reader numbered lines (see rewrite.read_raw)

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"


@dataclass
class Inputs:
    task: Task  # the config's task; the toolkit handles its rows by ``task.row_kind``, never by its name
    cfg: config_mod.RunConfig
    splits: list[Split]

    @property
    def kind(self) -> str:
        """The shape of the rows (``tunelab.tasks.base.ROW_KINDS``): text, tokens or conversation."""
        return self.task.row_kind

    def items(self) -> list[Item]:
        return [it for s in self.splits for it in s.items]


def read_skipping(task: Task, cfg: config_mod.RunConfig, path: str) -> Table:
    """``task.read`` on ``path`` with ``data.on_error: skip``, so bad rows come back in ``Table.skipped`` as
    (line, reason) findings instead of stopping the command."""
    return task.read(cfg.model_copy(update={"data": cfg.data.model_copy(update={"on_error": "skip"})}), path)


def parse_args(items: list[str]) -> tuple[str | None, list[str], list[str]]:
    """(config path or None, files, overrides) from ``CONFIG_OR_FILES [key=value ...]``."""
    cfg_path, files, overrides = None, [], []
    for item in items:
        if "=" in item and not Path(item).exists():
            overrides.append(item)
        elif item.lower().endswith((".yaml", ".yml")):
            if cfg_path is not None:
                raise ConfigError(f"{item}: only one config file, found a second after {cfg_path}")
            cfg_path = item
        else:
            files.append(item)
    return cfg_path, files, overrides


def load(items: list[str], *, max_files: int = 3) -> Inputs:
    """Resolve ``CONFIG_OR_FILES [key=value ...]`` and read every split with the task's reader."""
    cfg_path, files, overrides = parse_args(items)
    if cfg_path and files:
        raise ConfigError(
            f"{cfg_path}: give a config or data files, not both (files: {', '.join(files)}); "
            "set data.train=... to change a config's files"
        )
    if not cfg_path and not files and not any(o.startswith("data.train=") for o in overrides):
        raise ConfigError("no data: give a train config (CONFIG.yaml) or data files (train [dev [test]])")
    if len(files) > max_files:
        raise ConfigError(f"at most {max_files} data files (train, dev, test), found {len(files)}: {', '.join(files)}")
    implied = [f"data.{name}={path}" for name, path in zip(SPLITS, files)]
    if files and not any(o.startswith(("task=", "task.name=")) for o in overrides):
        from tunelab.tasks import TASKS

        guessed = guess_task(files[0])
        implied.append(f"task={guessed}")
        if TASKS[guessed].row_kind == "conversation" and not any(o.startswith("model.name=") for o in overrides):
            implied.append("model.name=smollm2-135m")  # instruction data is measured in a chat model's tokens
    cfg = config_mod.load(cfg_path, implied + overrides)
    return read_splits(cfg)


def guess_task(path: str) -> str:
    """classification, token_classification or causal_lm from a file's extension and first record."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".conll", ".iob", ".bio") or (p.is_file() and not suffix):
        return "token_classification"
    if suffix == ".txt":
        return "causal_lm"
    if suffix in (".json", ".jsonl") and p.is_file():
        keys = _first_object_keys(p)
        if keys & {"instruction", "messages", "conversations"}:
            return "causal_lm"
        if keys & {"tokens", "spans"}:
            return "token_classification"
    return "classification"


def _first_object_keys(p: Path) -> set[str]:
    with p.open(encoding="utf-8", errors="replace") as fh:
        head = fh.read(65536).lstrip().lstrip("[").lstrip()
    try:
        obj, _ = json.JSONDecoder().raw_decode(head)
    except json.JSONDecodeError:
        return set()
    return set(obj) if isinstance(obj, dict) else set()


def read_splits(cfg: config_mod.RunConfig) -> Inputs:
    from tunelab.tasks import TASKS

    task = TASKS[cfg.task.name]
    splits = []
    for name in SPLITS:
        path = getattr(cfg.data, name)
        if path is None:
            continue
        try:
            table = read_skipping(task, cfg, path)
        except DataError as exc:
            if (
                "no sentences found" in str(exc)
                or "no examples" in str(exc)
                or "expected at least one data row" in str(exc)
            ):
                raise DataError(f"{exc} (the {name} file has no readable rows)") from None
            raise
        splits.append(SPLIT_BY_KIND[task.row_kind](cfg, name, path, table))
    return Inputs(task, cfg, splits)


def _text_split(cfg: config_mod.RunConfig, name: str, path: str, table: Table) -> Split:
    from tunelab.data import sources, tables

    if sources.is_packaged(path):
        fmt = "csv"
    elif tables.is_hub(path) or tables.is_saved_dataset(path):
        fmt = "dataset"  # read only: the rewriting commands refuse it ("cannot rewrite format")
    else:
        fmt = sources._detect_format(path, cfg.data.format)
    items = [
        Item(name, path, r.line, r.text if r.text_pair is None else f"{r.text}\n{r.text_pair}", r.label, r)
        for r in table.rows
    ]
    return Split(name, path, fmt, items, list(table.skipped), "newline")


def _tokens_split(cfg: config_mod.RunConfig, name: str, path: str, table: Table) -> Split:
    from tunelab.data import conll

    fmt = conll.detect_format(path, cfg.data.format, True)
    items = [Item(name, path, s.line, " ".join(s.tokens), None, s) for s in table.rows]
    return Split(name, path, fmt, items, list(table.skipped))


def _conversation_split(cfg: config_mod.RunConfig, name: str, path: str, table: Table) -> Split:
    fmt = (
        cfg.data.format
        if cfg.data.format != "auto"
        else {".json": "json", ".jsonl": "jsonl"}.get(Path(path).suffix.lower(), "text")
    )
    items = [_lm_item(name, path, ex) for ex in table.rows]
    return Split(name, path, fmt, items, list(table.skipped))


# one reader per row kind (tunelab.tasks.base.ROW_KINDS): what the toolkit compares, and the file format to rewrite
SPLIT_BY_KIND = {"text": _text_split, "tokens": _tokens_split, "conversation": _conversation_split}


def _lm_item(split: str, path: str, ex) -> Item:
    if ex.messages is None:  # plain text document
        return Item(split, path, ex.line, ex.text, None, ex)
    prompt = "\n".join(m["content"] for m in ex.messages if m["role"] != "assistant")
    replies = [m["content"] for m in ex.messages if m["role"] == "assistant"]
    return Item(split, path, ex.line, prompt, None, ex, replies[-1] if replies else None)


def writable(inputs: Inputs) -> None:
    """Raise unless every input is a file the rewriting commands can copy (not a packaged dataset)."""
    from tunelab.data import sources

    for s in inputs.splits:
        if inputs.kind == "text" and sources.is_packaged(s.path):
            raise DataError(f"{s.path}: a packaged dataset cannot be rewritten; export it to a file first")
