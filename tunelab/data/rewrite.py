"""Raw records of a data file, for commands that write a changed copy (clean, scrub, split, augment).

The readers (sources, conll, templates) turn a file into rows that know their start line; this module
splits the same file into the raw text of each record, keyed by the same start line, so a command can
keep, drop or change records while everything it does not touch (other columns, header, comments,
formatting) is copied byte for byte. Inputs are only read; outputs go to files the caller names.

Record boundaries per format:
    csv/tsv   one CSV record (a quoted field may span lines), line numbers as ``csv.reader`` counts them
    jsonl     one non-blank line
    json      one element of the top-level list (the copy is re-serialised, so it keeps keys, not layout)
    conll     one sentence: the lines from its first token to the blank line after it
    text      one blank-line separated document
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.data import sources
from tunelab.errors import DataError


@dataclass
class RawRecord:
    """One record of a file: its start line, its raw text and, where the format has them, its parsed fields."""

    line: int
    raw: str  # the record's text as in the file, line endings included
    fields: list[str] | dict | None = None  # csv/tsv fields, or the JSON object
    data: bool = True  # False for a header, -DOCSTART- or comment lines: always copied


@dataclass
class RawFile:
    path: str
    fmt: str  # csv, tsv, jsonl, json, conll, text
    records: list[RawRecord] = field(default_factory=list)

    def by_line(self) -> dict[int, RawRecord]:
        return {r.line: r for r in self.records if r.data}


def physical_lines(text: str) -> list[str]:
    """Lines with their endings, split exactly where ``csv.reader`` counts a new line (\\n, \\r\\n, \\r)."""
    return io.StringIO(text, newline="").readlines()


def newline_lines(text: str) -> list[str]:
    """Lines with their endings, split on \\n only (how the classification JSONL reader counts)."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def read_raw(path: str, fmt: str, lines_as: str = "splitlines") -> RawFile:
    """Split ``path`` (already validated by a reader) into raw records; ``fmt`` as the reader resolved it.

    ``lines_as`` is how that reader numbered JSONL/conll/text lines: ``newline`` (sources) or ``splitlines``
    (conll, templates); they differ only for files holding \\x0b, \\x1c, \\u2028 and similar separators.
    """
    if fmt not in ("csv", "tsv", "jsonl", "json", "conll", "text"):  # parquet, arrow, datasets folders, hub ids
        raise DataError(
            f"{path}: cannot rewrite format {fmt!r} (the rewriting commands copy csv, tsv, json, jsonl, conll and "
            "text files line by line); `tunelab data audit` reads it, or convert it to JSONL first"
        )
    text = sources._read_text(Path(path), path)
    out = RawFile(path, fmt)
    split = newline_lines if lines_as == "newline" else (lambda t: t.splitlines(keepends=True))
    if fmt in ("csv", "tsv"):
        out.records = _delimited(text, "," if fmt == "csv" else "\t")
    elif fmt == "jsonl":
        out.records = [
            RawRecord(n, ln, _json_or_none(ln)) if ln.strip() else RawRecord(n, ln, None, False)
            for n, ln in enumerate(split(text), start=1)
        ]
    elif fmt == "json":
        data = json.loads(text)
        out.records = [
            RawRecord(n, json.dumps(obj, ensure_ascii=False), obj) for n, obj in zip(sources._element_lines(text), data)
        ]
    elif fmt in ("conll", "text"):
        out.records = _blocks(split(text), skip_docstart=fmt == "conll")
    else:
        raise DataError(f"{path}: cannot rewrite format {fmt!r}")
    return out


def _json_or_none(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _delimited(text: str, delimiter: str) -> list[RawRecord]:
    lines = physical_lines(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    limit = csv.field_size_limit(2**31 - 1)
    out, start = [], 1
    try:
        while True:
            try:
                fields = next(reader, None)
            except csv.Error:
                fields = []  # a malformed record: kept as raw text, the reader reported it
            if fields is None:
                break
            end = reader.line_num
            raw = "".join(lines[start - 1 : end])
            out.append(RawRecord(start, raw, fields, bool(fields)))
            start = end + 1
    finally:
        csv.field_size_limit(limit)
    if start <= len(lines):  # trailing text after the last record the reader saw
        out.append(RawRecord(start, "".join(lines[start - 1 :]), None, False))
    return out


def _blocks(lines: list[str], skip_docstart: bool) -> list[RawRecord]:
    """Blank-line separated blocks; blank lines (and -DOCSTART- lines) are non-data records of their own."""
    out: list[RawRecord] = []
    block: list[str] = []
    start = 1
    for n, line in enumerate(lines, start=1):
        bare = line.strip().strip(sources_invisible()).strip()
        separator = not bare or (skip_docstart and bare.split()[0] == "-DOCSTART-")
        if separator:
            if block:
                out.append(RawRecord(start, "".join(block)))
                block = []
            out.append(RawRecord(n, line, None, False))
            continue
        if not block:
            start = n
        block.append(line)
    if block:
        out.append(RawRecord(start, "".join(block)))
    return out


def sources_invisible() -> str:
    from tunelab.data.conll import INVISIBLE

    return INVISIBLE


def render(rf: RawFile, keep: list[RawRecord]) -> str:
    """The file text holding ``keep`` (data records, possibly changed) plus every non-data record in place.

    ``keep`` lists data records in output order; non-data records (header, separators) stay where they were
    relative to the first data record. For JSON the output is a list of the kept objects.
    """
    if rf.fmt == "json":
        return json.dumps([r.fields for r in keep], ensure_ascii=False, indent=2) + "\n"
    first = min((d.line for d in rf.records if d.data), default=0)
    head = [r for r in rf.records if not r.data and r.line < first]  # header, or -DOCSTART- and blank lines on top
    if rf.fmt in ("conll", "text"):  # each block is followed by one blank line
        return "".join(r.raw for r in head) + "".join(_ensure_newline(r.raw) + "\n" for r in keep)
    return "".join(r.raw for r in head) + "".join(_ensure_newline(r.raw) for r in keep)


def _ensure_newline(raw: str) -> str:
    return raw if raw.endswith(("\n", "\r")) else raw + "\n"


def with_field(rf: RawFile, rec: RawRecord, column: int | str, value: str) -> RawRecord:
    """A copy of ``rec`` whose ``column`` (csv position, or JSON key) holds ``value``."""
    if rf.fmt in ("csv", "tsv"):
        fields = list(rec.fields)
        fields[column] = value
        ending = "\r\n" if rec.raw.endswith("\r\n") else "\n"
        buf = io.StringIO()
        csv.writer(buf, delimiter="," if rf.fmt == "csv" else "\t", lineterminator=ending).writerow(fields)
        return RawRecord(rec.line, buf.getvalue(), fields)
    if rf.fmt in ("json", "jsonl"):
        obj = dict(rec.fields)
        obj[column] = value
        return with_object(rf, rec, obj)
    raise DataError(f"{rf.path}: cannot change a field of a {rf.fmt} record")


def with_object(rf: RawFile, rec: RawRecord, obj: dict) -> RawRecord:
    """A copy of a JSON/JSONL record holding ``obj``."""
    raw = json.dumps(obj, ensure_ascii=False)
    return RawRecord(rec.line, raw + ("\n" if rf.fmt == "jsonl" else ""), obj)


def with_lines(rec: RawRecord, lines: list[str]) -> RawRecord:
    """A copy of a conll/text block with new lines (no endings)."""
    return RawRecord(rec.line, "".join(ln + "\n" for ln in lines))


def column_index(fields: list[str], column: str | int, has_header: bool) -> int:
    """Position of a csv/tsv column given by name (looked up in the header) or 0-based position."""
    pos = sources._position(column)
    if has_header and column in fields:
        return fields.index(column)
    if pos is None:
        raise DataError(f"column {column!r} is not in the header {fields}")
    return pos
