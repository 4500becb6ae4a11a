"""Text-to-text data: (source, references) pairs from column files, JSON(L) with lists, or line-aligned parallel
files; encoder-decoder features and their collate. Decoder-only features are causal_lm's (lm_data.encode_split on
the pairs as two-message chats). torch is imported inside functions.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from dataclasses import dataclass
from pathlib import Path

from tunelab.data import sources, templates
from tunelab.errors import DataError
from tunelab.tasks.base import Table

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


@dataclass
class Pair(templates.Example):
    """A source text and its references (one or more target texts). ``messages`` holds the source as the user turn
    and the first reference as the reply, so the data toolkit handles pairs as conversations."""

    references: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return self.messages[0]["content"]


def make_pair(source: str, references: list[str], line: int) -> Pair:
    messages = [{"role": "user", "content": source}, {"role": "assistant", "content": references[0]}]
    return Pair(messages, None, line, references=tuple(references))


# ---------------------------------------------------------------- reading


def read_pairs(path: str, data, task) -> Table:
    """Pairs from ``path`` per the ``data:`` section (format, encoding, on_error) and the task section (columns,
    languages, join). Every bad row is a DataError naming ``path:line`` (or skipped under data.on_error=skip)."""
    if task.languages:
        return _read_parallel(path, target_file(path, task.languages), data.encoding, data.on_error)
    fmt = _format(path, data.format)
    if fmt in ("json", "jsonl"):
        return _read_objects(path, fmt, data.encoding, data.on_error, task)
    table = sources.read_table(
        path,
        text_column=task.source_column,
        label_column=task.target_column,
        format=data.format,
        has_header=data.has_header,
        on_error=data.on_error,
        delimiter=data.delimiter,
        encoding=data.encoding,
    )
    return Table([make_pair(r.text, [r.label], r.line) for r in table.rows], table.skipped)


def target_file(path: str, languages: list[str]) -> str:
    """The target-side file of a parallel pair: ``train.en.gz`` with languages [en, de] -> ``train.de.gz``."""
    src, tgt = languages
    p = Path(path)
    parts = p.name.split(".")
    if src not in parts[1:]:
        raise DataError(
            f"{path}: task.languages is [{src}, {tgt}], so the file name must hold '.{src}' "
            f"(e.g. train.{src}.gz, whose target side is train.{tgt}.gz)"
        )
    i = len(parts) - 1 - parts[::-1].index(src)
    parts[i] = tgt
    return str(p.with_name(".".join(parts)))


def lines(path: str, encoding: str) -> list[str]:
    """The lines of a text file, plain or gz/bz2/xz-compressed; DataError naming the file (and line) otherwise."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found")
    opener = _OPENERS.get(p.suffix.lower(), open)
    try:
        with opener(p, "rt", encoding=encoding) as f:
            return f.read().split("\n")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1 if isinstance(exc.object, bytes) else "?"
        raise DataError(f"{path}:{line}: not valid {encoding} text (set data.encoding)") from None
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def _read_parallel(src_path: str, tgt_path: str, encoding: str, on_error: str) -> Table:
    src, tgt = lines(src_path, encoding), lines(tgt_path, encoding)
    while src and not src[-1].strip() and tgt and not tgt[-1].strip():  # the final newline of both files
        src, tgt = src[:-1], tgt[:-1]
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: parallel files must be line-aligned"
        )
    out = Table([])
    for n, (s, t) in enumerate(zip(src, tgt), start=1):
        empty = src_path if not s.strip() else tgt_path if not t.strip() else None
        if empty is None:
            out.rows.append(make_pair(s.strip(), [t.strip()], n))
        elif on_error == "skip":
            out.skipped.append((n, f"{empty}:{n}: empty line"))
        else:
            raise DataError(f"{empty}:{n}: empty line (every line pairs with the same line of the other file)")
    if not out.rows:
        raise DataError(f"{src_path}: no pairs")
    return out


def _format(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    name = path.lower()
    for ext in _OPENERS:
        name = name.removesuffix(ext)
    return Path(name).suffix.lstrip(".")


def _read_objects(path: str, fmt: str, encoding: str, on_error: str, task) -> Table:
    text = "\n".join(lines(path, encoding))
    if fmt == "jsonl":
        items = []
        for n, raw in enumerate(text.split("\n"), start=1):
            if raw.strip():
                try:
                    items.append((n, json.loads(raw)))
                except json.JSONDecodeError as exc:
                    items.append((n, DataError(f"not valid JSON ({exc.msg}, column {exc.colno})")))
    else:
        items = list(sources._json_list(text, path))
    out = Table([])
    for n, obj in items:
        try:
            out.rows.append(_pair_of(obj, n, task))
        except DataError as exc:
            if on_error != "skip":
                raise DataError(f"{path}:{n}: {exc}") from None
            out.skipped.append((n, str(exc)))
    if not out.rows:
        raise DataError(f"{path}: no pairs")
    return out


def _pair_of(obj, line: int, task) -> Pair:
    if isinstance(obj, DataError):
        raise obj
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, found {type(obj).__name__}")
    source = _texts(obj, task.source_column)
    targets = _texts(obj, task.target_column)
    return make_pair(task.join.join(source), targets, line)


def _texts(obj: dict, key: str) -> list[str]:
    """A key's value as a non-empty list of non-empty strings (a string is a list of one).

    Blank items inside a list are dropped: sentence-split sources carry them (SciTLDR's train.jsonl line 1538 has a
    whitespace-only sentence among 20); a list with no text at all, a blank string or a non-string is an error."""
    if key not in obj:
        raise DataError(f"expected key {key!r}, found keys: {', '.join(map(repr, obj))}")
    value = obj[key]
    items = value if isinstance(value, list) else [value]
    for v in items:
        if not isinstance(v, str) or (not v.strip() and not isinstance(value, list)):
            raise DataError(f"{key!r}: expected non-empty text or a list of texts, found {json.dumps(v)[:60]}")
    texts = [v.strip() for v in items if v.strip()]
    if not texts:
        raise DataError(f"{key!r}: expected at least one non-empty text, found {json.dumps(value)[:60]}")
    return texts


# ---------------------------------------------------------------- encoder-decoder features


def training_pairs(rows: list[Pair], targets: str) -> list[Pair]:
    """One pair per reference (``targets: each``) or the first reference only (``first``)."""
    if targets == "first":
        return rows
    return [make_pair(r.source, [ref], r.line) for r in rows for ref in r.references]


def encode_seq2seq(
    tokenizer, sources_: list[str], targets: list[str], max_source: int, max_target: int
) -> tuple[list[dict], int]:
    """Encoder input ids (cut to ``max_source``) and target ids as labels (cut to ``max_target``, keeping the
    tokenizer's end token last so a cut target still teaches the model to stop); and how many pairs were cut."""
    enc = tokenizer(sources_)["input_ids"]
    dec = tokenizer(text_target=targets)["input_ids"]
    out, cut = [], 0
    for src, tgt in zip(enc, dec):
        if len(src) > max_source or len(tgt) > max_target:
            cut += 1
        src = src if len(src) <= max_source else src[: max_source - 1] + src[-1:]
        tgt = tgt if len(tgt) <= max_target else tgt[: max_target - 1] + tgt[-1:]
        out.append({"input_ids": list(src), "labels": list(tgt)})
    return out, cut


def collate_seq2seq(features: list[dict], pad_id: int) -> dict:
    """Right-pad encoder inputs (pad id, attention mask) and labels (-100)."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    target = max(len(f["labels"]) for f in features)
    return {
        "input_ids": torch.tensor([f["input_ids"] + [pad_id] * (width - len(f["input_ids"])) for f in features]),
        "attention_mask": torch.tensor(
            [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        ),
        "labels": torch.tensor([f["labels"] + [-100] * (target - len(f["labels"])) for f in features]),
    }  # (batch, width), (batch, width), (batch, target)
