"""Read token-classification data: CoNLL-style columns, JSONL token/tag lists, JSONL text with character spans.

Every reader returns ``Sentence`` rows whose tags are IOB2, plus the text and the
character offset of each token (so predictions can be given back as spans of the
original text). Problems are reported as ``file:line: what was expected``.

Formats:
    conll   one token per line, columns separated by TAB (or spaces), the tag in
            ``tag_column`` (default: last); blank line between sentences;
            ``-DOCSTART-`` lines are ignored; ``token_prefix`` (e.g. WikiANN's ``en:``) is stripped.
    jsonl   one JSON object per line: {"tokens": [...], "tags": [...]}
            or {"text": "...", "spans": [{"start": 0, "end": 5, "label": "PER"}, ...]}.
    txt     (prediction input only) one raw text per line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.data import tagging
from tunelab.errors import DataError

WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)  # words and single punctuation/symbol characters
INVISIBLE = "\ufeff\u200b"  # BOMs and zero-width spaces that some files leave on otherwise blank lines


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str] | None  # IOB2, one per token; None for prediction input
    line: int  # line of the first token
    text: str = ""  # the text the tokens come from
    offsets: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of each token in text

    def __post_init__(self):
        if not self.offsets:
            self.text, self.offsets = join_tokens(self.tokens)


@dataclass
class Table:
    rows: list[Sentence]
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) for rows dropped by on_error=skip
    repaired: int = 0  # sentences whose tags were repaired


@dataclass(frozen=True)
class Options:
    tag_column: int = -1
    token_prefix: str | None = None
    tag_scheme: str = "iob2"
    repair_tags: bool = False
    with_labels: bool = True
    on_error: str = "raise"


class _Bad(Exception):
    def __init__(self, line: int, msg: str):
        super().__init__(msg)
        self.line, self.msg = line, msg


def join_tokens(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text of pre-tokenised input (tokens joined by single spaces) and each token's offsets in it."""
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return " ".join(tokens), offsets


def tokenize(text: str, cuts: set[int] = frozenset()) -> tuple[list[str], list[tuple[int, int]]]:
    """Split raw text into words and punctuation with character offsets, never across a position in ``cuts``."""
    bounds = sorted({0, len(text), *cuts})
    tokens, offsets = [], []
    for a, b in zip(bounds, bounds[1:]):
        for m in WORD.finditer(text, a, b):
            tokens.append(m.group())
            offsets.append((m.start(), m.end()))
    return tokens, offsets


def detect_format(path: str, fmt: str, with_labels: bool) -> str:
    if fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix == ".txt" and not with_labels:
        return "txt"
    return "conll"


def read(path: str, fmt: str = "auto", opts: Options = Options()) -> Table:
    """Read a token-classification file; ``fmt`` is conll, jsonl, txt or auto (by extension)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found")
    fmt = detect_format(path, fmt, opts.with_labels)
    if fmt not in ("conll", "jsonl", "txt"):
        raise DataError(f"{path}: format '{fmt}' is not a token-classification format; use conll or jsonl")
    lines = p.read_text(encoding="utf-8-sig").splitlines()
    groups = (
        _conll_groups(lines, opts)
        if fmt == "conll"
        else [(n, [ln]) for n, ln in enumerate(lines, 1) if ln.strip(INVISIBLE + " \t")]
    )
    parse = {"conll": _parse_conll, "jsonl": _parse_json, "txt": _parse_text}[fmt]
    table = Table([])
    for start, group in groups:
        try:
            sentence, fixed = parse(start, group, opts)
        except _Bad as bad:
            if opts.on_error == "raise":
                raise DataError(f"{path}:{bad.line}: {bad.msg}") from None
            table.skipped.append((bad.line, bad.msg))
            continue
        table.rows.append(sentence)
        table.repaired += fixed
    if not table.rows:
        raise DataError(
            f"{path}: no sentences found" + (f" (all {len(table.skipped)} were bad)" if table.skipped else "")
        )
    return table


def read_lines(lines, source: str = "<stdin>") -> list[Sentence]:
    """Prediction input: each non-blank line is raw text, or JSON with "text" or pre-tokenised "tokens"."""
    out = []
    opts = Options(with_labels=False)
    for n, line in enumerate(lines, start=1):
        if not line.strip(INVISIBLE + " \t\n"):
            continue
        try:
            out.append((_parse_json if line.lstrip().startswith("{") else _parse_text)(n, [line.rstrip("\n")], opts)[0])
        except _Bad as bad:
            raise DataError(f"{source}:{bad.line}: {bad.msg}") from None
    return out


# ---------------------------------------------------------------- conll


def _conll_groups(lines: list[str], opts: Options) -> list[tuple[int, list[tuple[int, list[str]]]]]:
    """Sentences as (first line, [(line, columns), ...]); blank and -DOCSTART- lines separate them."""
    groups, current = [], []
    for n, raw in enumerate(lines, start=1):
        line = raw.strip().strip(INVISIBLE).strip()
        cols = [c.strip() for c in line.split("\t")] if "\t" in line else line.split()
        if not line or cols[0] == "-DOCSTART-":
            if current:
                groups.append((current[0][0], current))
            current = []
            continue
        current.append((n, cols))
    if current:
        groups.append((current[0][0], current))
    return groups


def _parse_conll(start: int, group, opts: Options) -> tuple[Sentence, int]:
    tokens, tags, lines = [], [], []
    for n, cols in group:
        token = cols[0]
        if opts.token_prefix and token.startswith(opts.token_prefix) and len(token) > len(opts.token_prefix):
            token = token[len(opts.token_prefix) :]
        tokens.append(token)
        lines.append(n)
        if opts.with_labels:
            if len(cols) < 2:
                raise _Bad(n, f"expected a token and a tag separated by TAB or spaces, got one column ('{cols[0]}')")
            try:
                tags.append(cols[opts.tag_column])
            except IndexError:
                raise _Bad(
                    n, f"task.tag_column {opts.tag_column} is out of range: the line has {len(cols)} columns"
                ) from None
    if not opts.with_labels:
        return Sentence(tokens, None, start), 0
    iob2, fixed = _to_iob2(tags, lines, opts)
    return Sentence(tokens, iob2, start), fixed


def _to_iob2(tags: list[str], lines: list[int], opts: Options) -> tuple[list[str], int]:
    """Validate prefixes, convert to IOB2, then report (or repair) orphan I- tags at their line."""
    for tag, n in zip(tags, lines):
        try:
            tagging.check_prefixes([tag], opts.tag_scheme)
        except ValueError as exc:
            raise _Bad(n, f"{exc}; set task.tag_scheme if the file uses another scheme") from None
    iob2 = tagging.to_iob2(tags, opts.tag_scheme)
    bad = tagging.find_invalid(iob2)
    if not bad:
        return iob2, 0
    if opts.repair_tags:
        return tagging.repair(iob2), 1
    i, reason = bad[0]
    hint = "set task.repair_tags: true to read it as B-, or task.tag_scheme: iob1 if the file uses IOB1"
    raise _Bad(lines[i], f"invalid tag sequence ({opts.tag_scheme}): {reason}; {hint}")


# ---------------------------------------------------------------- jsonl / txt


def _parse_json(start: int, group: list[str], opts: Options) -> tuple[Sentence, int]:
    try:
        obj = json.loads(group[0])
    except json.JSONDecodeError as exc:
        raise _Bad(start, f"not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise _Bad(start, 'expected a JSON object with "tokens" and "tags", or "text" and "spans"')
    if "tokens" in obj:
        return _parse_tokens(start, obj, opts)
    if "text" in obj:
        return _parse_spans(start, obj, opts)
    raise _Bad(start, f'expected "tokens" (with "tags") or "text" (with "spans"); got keys {sorted(obj)}')


def _parse_tokens(start: int, obj: dict, opts: Options) -> tuple[Sentence, int]:
    tokens = obj["tokens"]
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t.strip() for t in tokens):
        raise _Bad(start, '"tokens" must be a non-empty list of non-empty strings')
    if not opts.with_labels:
        return Sentence(tokens, None, start), 0
    tags = obj.get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _Bad(start, '"tags" must be a list of strings (one per token)')
    if len(tags) != len(tokens):
        raise _Bad(start, f"{len(tokens)} tokens but {len(tags)} tags; expected one tag per token")
    iob2, fixed = _to_iob2(tags, [start] * len(tags), opts)
    return Sentence(tokens, iob2, start), fixed


def _parse_spans(start: int, obj: dict, opts: Options) -> tuple[Sentence, int]:
    text = obj["text"]
    if not isinstance(text, str) or not text.strip():
        raise _Bad(start, '"text" must be a non-empty string')
    if not opts.with_labels:
        return _parse_text(start, [text], opts)
    raw = obj.get("spans")
    if not isinstance(raw, list):
        raise _Bad(start, '"spans" must be a list of {"start", "end", "label"} objects (may be empty)')
    entities = [_check_span(start, s, text) for s in raw]
    tokens, offsets = tokenize(text, {c for s, e, _ in entities for c in (s, e)})
    token_spans = []
    for s, e, label in entities:
        inside = [i for i, (a, b) in enumerate(offsets) if a >= s and b <= e]
        if not inside:
            raise _Bad(start, f"span {s}-{e} ({label}) covers no word of the text ({text[s:e]!r})")
        token_spans.append((inside[0], inside[-1] + 1, label))
    try:
        tags = tagging.from_spans(len(tokens), token_spans)
    except ValueError as exc:
        raise _Bad(start, str(exc)) from None
    return Sentence(tokens, tags, start, text, offsets), 0


def _check_span(line: int, span, text: str) -> tuple[int, int, str]:
    if not isinstance(span, dict) or not {"start", "end", "label"} <= set(span):
        raise _Bad(line, f'each span needs "start", "end" and "label"; got {span!r}')
    s, e, label = span["start"], span["end"], span["label"]
    if not (isinstance(s, int) and isinstance(e, int) and 0 <= s < e <= len(text)):
        raise _Bad(
            line, f"span start/end must be integers with 0 <= start < end <= {len(text)} (text length); got {s}-{e}"
        )
    if not isinstance(label, str) or not label.strip() or "-" in label[:2] or label == "O":
        raise _Bad(line, f"span label must be an entity type such as PER (no B-/I- prefix); got {label!r}")
    return s, e, label


def _parse_text(start: int, group: list[str], opts: Options) -> tuple[Sentence, int]:
    text = group[0]
    tokens, offsets = tokenize(text)
    if not tokens:
        raise _Bad(start, "text has no words")
    return Sentence(tokens, None, start, text, offsets), 0
