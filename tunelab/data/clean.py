"""`tunelab data clean`: copies of the data files with the chosen fixes, and a log of every dropped or changed row.

The audit decides what is wrong; ``decide`` turns its findings into (item -> reason) drops, ``normalised``
into text changes, and ``write_split`` copies each input file record by record (other columns, header and
layout untouched), leaving out dropped records and rewriting changed ones. Inputs are never modified.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.data import audit as audit_mod
from tunelab.data import audit_report, checks, rewrite
from tunelab.data.corpus import Inputs, Split
from tunelab.errors import TunelabError

FIXES = ("exact", "near", "conflicts", "label-errors", "relabel", "leakage", "unreadable", "encoding", "whitespace")
LABEL_FIXES = {"label-errors", "relabel"}  # the fixes that need the label-error finding


def parse_fixes(text: str) -> set[str]:
    fixes = {f.strip() for f in text.split(",") if f.strip()}
    unknown = sorted(fixes - set(FIXES))
    if unknown:
        raise TunelabError(f"--fix: unknown fix {unknown[0]!r}; valid: {', '.join(FIXES)}")
    if not fixes:
        raise TunelabError(f"--fix: expected at least one of {', '.join(FIXES)}")
    if LABEL_FIXES <= fixes:
        raise TunelabError(
            "--fix: label-errors drops the likely label errors and relabel gives them the probe's label; choose one"
        )
    return fixes


def decide(audit: audit_mod.Audit, fixes: set[str]) -> dict[int, str]:
    """Item index -> why it is dropped. Of each duplicate group the first row is kept (unless its labels conflict)."""
    drop: dict[int, str] = {}

    def groups(check: str) -> list[list[int]]:
        f = audit.finding(check)
        return f.groups if f else []

    if "conflicts" in fixes:
        for g in groups("conflicting_duplicates") + groups("conflicting_near_duplicates"):
            for i in g:
                drop.setdefault(i, "duplicate with a conflicting label or output")
    if "exact" in fixes:
        for g in groups("exact_duplicates") + groups("duplicate_instructions"):
            for i in g[1:]:
                drop.setdefault(i, f"exact duplicate of line {audit.items[g[0]].line}")
    if "near" in fixes:
        for g in groups("near_duplicates"):
            for i in g[1:]:
                drop.setdefault(i, f"near duplicate of line {audit.items[g[0]].line}")
    if "leakage" in fixes:
        for g in groups("leakage_exact") + groups("leakage_near"):
            first = audit.items[g[0]]
            drop.setdefault(g[-1], f"also in {first.split} ({first.source}:{first.line})")
    if "label-errors" in fixes:
        f = audit.finding("label_errors")
        for k, g in enumerate(f.groups if f else []):
            d = f.detail.get(k, {})
            drop.setdefault(g[0], f"likely label error (given {d.get('given')}, model suggests {d.get('suggested')})")
    return drop


def relabels(audit: audit_mod.Audit, fixes: set[str]) -> dict[int, tuple[str, str]]:
    """Item index -> (given label, new label) for ``relabel``: each likely label error gets the label the probe
    suggests (its most probable class), instead of being dropped. Rows whose suggestion equals the given label
    (possible with cleanlab's count-based cutoffs) are left as they are."""
    f = audit.finding("label_errors")
    if "relabel" not in fixes or f is None:
        return {}
    out = {}
    for k, g in enumerate(f.groups):
        d = f.detail.get(k, {})
        given, new = d.get("given"), d.get("suggested")
        if new is not None and new != given:
            out[g[0]] = (given, new)
    return out


def normalised(kind: str, item, whitespace: bool) -> object | None:
    """The item's row with fixed text, or None if nothing changes.

    Always: mojibake repaired, control and zero-width characters removed. With ``whitespace`` (classification
    and NER only; in instruction data whitespace and newlines carry meaning): runs collapsed, ends stripped.
    """
    fix = checks.fix_text if whitespace else checks.fix_encoding
    if kind == "text":
        r = item.row
        text, pair = fix(r.text), None if r.text_pair is None else fix(r.text_pair)
        return None if (text, pair) == (r.text, r.text_pair) else (text, pair)
    if kind == "tokens":
        tokens = [fix(t).strip() or t for t in item.row.tokens]
        return None if tokens == item.row.tokens else tokens
    if item.row.messages is None:
        return None
    msgs = [{**m, "content": checks.fix_encoding(m["content"])} for m in item.row.messages]
    return None if msgs == item.row.messages else msgs


def output_name(split: Split, taken: set[str]) -> str:
    """The input's file name without a compression suffix, prefixed by the split if two inputs share a name."""
    name = Path(split.path).name
    for ext in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(ext)
    if name in taken:
        name = f"{split.name}-{name}"
    taken.add(name)
    return name


def label_errors_from(path: str, result: audit_mod.Audit) -> audit_mod.Finding:
    """The label-error finding of an earlier audit (its audit.json, or the folder holding it), mapped onto these items."""
    file = Path(path) / "audit.json" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise TunelabError(f"{path}: --from-audit expects an audit folder or its audit.json, found neither")
    data = json.loads(file.read_text(encoding="utf-8"))
    where = {f"{it.source}:{it.line}": k for k, it in enumerate(result.items)}
    rows = [r for f in data.get("findings", []) if f.get("check") == "label_errors" for r in f["rows"]]
    if not rows:
        raise TunelabError(f"{file}: has no label_errors finding (was the label_errors check skipped?)")
    missing = [r["refs"][0] for r in rows if r["refs"][0] not in where]
    if missing:
        raise TunelabError(f"{file}: its row {missing[0]} is not in these inputs; audit and clean the same files")
    detail = {k: {x: r[x] for x in ("given", "suggested") if x in r} for k, r in enumerate(rows)}
    return audit_mod.Finding(
        "label_errors",
        "likely label errors (from an earlier audit)",
        "",
        [[where[r["refs"][0]]] for r in rows],
        detail=detail,
    )


def run(data: Inputs, fixes: set[str], opts: audit_mod.Options, out: Path, log, from_audit: str | None = None) -> dict:
    result = audit_mod.run(data, opts)
    if from_audit and LABEL_FIXES & fixes:
        result.findings.append(label_errors_from(from_audit, result))
    (out / "audit").mkdir()
    audit_report.write(result, out / "audit")
    drop = decide(result, fixes)
    relabel = relabels(result, fixes)
    index = {id(it): k for k, it in enumerate(result.items)}
    changes, summary, taken = [], {}, set()
    for split in data.splits:
        name = output_name(split, taken)
        text, log_rows, counts = write_split(data, split, drop, index, fixes, relabel)
        (out / name).write_text(text, encoding="utf-8")
        changes += log_rows
        summary[split.name] = {"input": split.path, "output": str(out / name), **counts}
    with (out / "changes.jsonl").open("w", encoding="utf-8") as fh:
        for row in changes:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "changes.md").write_text(changes_markdown(summary, changes), encoding="utf-8")
    return summary


def write_split(
    data: Inputs,
    split: Split,
    drop: dict[int, str],
    index: dict[int, int],
    fixes: set[str],
    relabel: dict[int, tuple[str, str]] | None = None,
):
    """(cleaned file text, change-log rows, counts) for one input file; ``relabel``: item -> (given, new label)."""
    rf = rewrite.read_raw(split.path, split.fmt, split.lines_as)
    starts = sorted(r.line for r in rf.records if r.data)
    bad_starts = {_block_start(starts, line): reason for line, reason in split.skipped}
    items = {it.line: it for it in split.items}
    keep, rows = [], []
    counts = {"rows_in": len(split.items) + len(split.skipped), "dropped": 0, "changed": 0}
    for rec in (r for r in rf.records if r.data):
        it = items.get(rec.line)
        if it is None and rec.line in bad_starts and "unreadable" in fixes:
            rows.append(
                {
                    "file": split.path,
                    "line": rec.line,
                    "action": "drop",
                    "reason": f"unreadable: {bad_starts[rec.line]}",
                    "text": rec.raw.strip()[:500],
                }
            )
            counts["dropped"] += 1
            continue
        reason = drop.get(index[id(it)]) if it is not None else None
        if reason:
            rows.append({"file": split.path, "line": rec.line, "action": "drop", "reason": reason, "text": it.text})
            counts["dropped"] += 1
            continue
        fixing = {"encoding", "whitespace"} & fixes
        new = normalised(data.kind, it, "whitespace" in fixes) if it is not None and fixing else None
        if new is not None:
            rec = changed_record(data, rf, rec, it, new)
            rows.append(
                {
                    "file": split.path,
                    "line": it.line,
                    "action": "change",
                    "reason": f"normalised {'/'.join(sorted(fixing))}",
                    "before": it.text,
                    "after": _after(data.kind, new),
                }
            )
            counts["changed"] += 1
        if it is not None and index[id(it)] in (relabel or {}):
            given, label = relabel[index[id(it)]]
            rec = relabelled_record(data, rf, rec, label)
            rows.append(
                {
                    "file": split.path,
                    "line": it.line,
                    "action": "change",
                    "reason": f"likely label error: relabelled {given} -> {label}",
                    "before": given,
                    "after": label,
                }
            )
            counts["changed"] += 1
        keep.append(rec)
    counts["rows_out"] = counts["rows_in"] - counts["dropped"]
    return rewrite.render(rf, keep), rows, counts


def _block_start(starts: list[int], line: int) -> int:
    """The start line of the record holding ``line`` (a conll error may point inside a sentence)."""
    import bisect

    k = bisect.bisect_right(starts, line) - 1
    return starts[k] if k >= 0 else line


def _after(kind: str, new) -> str:
    if kind == "text":
        return new[0] if new[1] is None else f"{new[0]}\n{new[1]}"
    if kind == "tokens":
        return " ".join(new)
    return "\n".join(m["content"] for m in new if m["role"] != "assistant")


def changed_record(data: Inputs, rf: rewrite.RawFile, rec: rewrite.RawRecord, item, new) -> rewrite.RawRecord:
    """``rec`` with the item's text replaced by ``new`` (as ``normalised`` or a scrubber returns it)."""
    cfg = data.cfg.data
    if data.kind == "text":
        text, pair = new
        rec = rewrite.with_field(rf, rec, _column(rf, cfg.text_column, cfg.has_header), text)
        if pair is not None:
            rec = rewrite.with_field(rf, rec, _column(rf, cfg.text_pair_column, cfg.has_header), pair)
        return rec
    if data.kind == "tokens":
        return replace_tokens(rf, rec, new, data.cfg.task.token_prefix)
    if isinstance(new, str):  # a plain-text document (blank-line separated; a scrubbed value never adds a blank line)
        return rewrite.with_lines(rec, [ln for ln in new.splitlines() if ln.strip()])
    return replace_messages(rf, rec, new)


def relabelled_record(data: Inputs, rf: rewrite.RawFile, rec: rewrite.RawRecord, label: str) -> rewrite.RawRecord:
    """``rec`` with its label cell set to ``label`` (a JSON label keeps its type: 1 stays a number)."""
    column = _column(rf, data.cfg.data.label_column, data.cfg.data.has_header)
    value: object = label
    if rf.fmt in ("json", "jsonl"):
        old = rec.fields.get(column) if isinstance(rec.fields, dict) else None
        if isinstance(old, int) and not isinstance(old, bool) and label.lstrip("-").isdigit():
            value = int(label)
    return rewrite.with_field(rf, rec, column, value)


def _column(rf: rewrite.RawFile, column, has_header) -> int | str:
    if rf.fmt not in ("csv", "tsv"):
        return column
    first = next(r for r in rf.records if r.data)
    header = has_header is True or (has_header == "auto" and isinstance(column, str) and column in first.fields)
    return rewrite.column_index(first.fields, column, header)


def replace_tokens(
    rf: rewrite.RawFile, rec: rewrite.RawRecord, tokens: list[str], prefix: str | None
) -> rewrite.RawRecord:
    """A conll block or NER JSONL record with new tokens (one per old token; tags and other columns kept)."""
    if rf.fmt == "jsonl":
        obj = dict(rec.fields)
        if "tokens" in obj:
            obj["tokens"] = tokens
        else:  # text + spans: rebuild the text from tokens is lossy, so replace token by token in place
            raise TunelabError(
                f"{rf.path}:{rec.line}: text-and-spans records cannot be rewritten token by token; use tokens/tags JSONL"
            )
        return rewrite.with_object(rf, rec, obj)
    lines = rec.raw.splitlines()
    out = []
    for line, tok in zip(lines, tokens):
        sep = "\t" if "\t" in line else " "
        cols = line.split(sep)
        cols[0] = (prefix or "") + tok if prefix and cols[0].startswith(prefix) else tok
        out.append(sep.join(cols))
    return rewrite.with_lines(rec, out)


def replace_messages(rf: rewrite.RawFile, rec: rewrite.RawRecord, messages: list[dict]) -> rewrite.RawRecord:
    """An instruction record (Alpaca, chat or ShareGPT) with new message contents."""
    obj = dict(rec.fields)
    if "messages" in obj:
        obj["messages"] = [{**m, "content": n["content"]} for m, n in zip(obj["messages"], messages)]
    elif "conversations" in obj:
        obj["conversations"] = [{**m, "value": n["content"]} for m, n in zip(obj["conversations"], messages)]
    else:
        user = next(m["content"] for m in messages if m["role"] == "user")
        reply = next(m["content"] for m in messages if m["role"] == "assistant")
        instruction, _, extra = user.partition("\n\n")
        obj["instruction"], obj["output"] = instruction, reply
        if obj.get("input"):
            obj["input"] = extra
        system = next((m["content"] for m in messages if m["role"] == "system"), None)
        if system is not None:
            obj["system"] = system
    return rewrite.with_object(rf, rec, obj)


def changes_markdown(summary: dict, changes: list[dict], shown: int = 200) -> str:
    from collections import Counter

    lines = [
        "# Changes",
        "",
        "| split | input | output | rows in | dropped | changed | rows out |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['input']} | {s['output']} | {s['rows_in']} | {s['dropped']} | {s['changed']} | {s['rows_out']} |"
        )
    reasons = Counter(r["reason"].split(" (")[0].split(" of line")[0] for r in changes)
    lines += ["", "| reason | rows |", "|---|---|"] + [f"| {k} | {v} |" for k, v in reasons.most_common()]
    lines += ["", f"## Every change{f' (first {shown}; all in changes.jsonl)' if len(changes) > shown else ''}", ""]
    for r in changes[:shown]:
        what = r.get("text") if r["action"] == "drop" else f"{r['before']!r} -> {r['after']!r}"
        lines.append(f"- `{r['file']}:{r['line']}` {r['action']}: {r['reason']}: {' '.join(str(what).split())[:160]}")
    return "\n".join(lines) + "\n"
