"""Write an audit as audit.json (everything), report.md and report.html (self-contained: inline CSS, no scripts, no network),
and label_probs.json (the label-error probe's out-of-fold probabilities) when label errors were looked for."""

from __future__ import annotations

import html
import json
from pathlib import Path

from tunelab.data.audit import Audit, Finding

SHOWN = 20  # rows listed per finding in the md/html reports (audit.json lists all)
_SEVERITY = {"error": 0, "warning": 1, "info": 2}


def to_json(audit: Audit) -> dict:
    """The whole audit as plain data: every finding with every row's file:line, text and label."""
    return {
        "task": audit.task,
        "files": audit.files,
        "stats": audit.stats,
        "summary": {f.check: f.count for f in audit.findings},
        "findings": [_finding_json(audit, f) for f in _ordered(audit.findings)],
    }


def _ordered(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (_SEVERITY[f.severity], -f.count))


def _finding_json(audit: Audit, f: Finding) -> dict:
    rows = []
    for k, group in enumerate(f.groups):
        row = {
            "refs": [f"{audit.items[i].source}:{audit.items[i].line}" for i in group],
            "text": audit.items[group[0]].text,
            **f.detail.get(k, {}),
        }
        answers = [a for a in (_answer(audit.items[i]) for i in group) if a is not None]
        if answers:
            row["labels" if audit.kind == "text" else "outputs"] = answers
        rows.append(row)
    rows += [{"refs": [f"{path}:{line}"], "reason": reason} for path, line, reason in f.lines]
    return {
        "check": f.check,
        "title": f.title,
        "severity": f.severity,
        "count": f.count,
        "effect": f.effect,
        "rows": rows,
    }


def _answer(item):
    return item.label if item.label is not None else (item.target[:200] if item.target else None)


def write(audit: Audit, out: Path) -> dict:
    """Write audit.json, report.md, report.html (and label_probs.json) into ``out`` (an existing folder); returns
    the JSON data."""
    data = to_json(audit)
    (out / "audit.json").write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    if audit.label_probs is not None:  # to study another cutoff without running the probe again
        (out / "label_probs.json").write_text(json.dumps(audit.label_probs, ensure_ascii=False), encoding="utf-8")
    (out / "report.md").write_text(markdown(data), encoding="utf-8")
    (out / "report.html").write_text(to_html(data), encoding="utf-8")
    return data


def _short(text: str, n: int = 120) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= n else t[: n - 1] + "…"


def _summary_rows(data: dict) -> list[list[str]]:
    return [[f["severity"], f["title"], str(f["count"]), f["effect"]] for f in data["findings"]]


def _stat_tables(data: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) for the statistics sections."""
    st = data["stats"]
    out = [
        (
            "Files",
            ["split", "file", "format", "rows", "unreadable rows"],
            [[f["split"], f["path"], f["format"], str(f["rows"]), str(f["unreadable"])] for f in data["files"]],
        )
    ]
    if "labels" in st:
        labels = sorted({lab for c in st["labels"].values() for lab in c})
        out.append(
            (
                "Label distribution",
                ["split", *labels, "imbalance (max/min)"],
                [
                    [s, *[str(c.get(lab, 0)) for lab in labels], str(st["imbalance"][s])]
                    for s, c in st["labels"].items()
                ],
            )
        )
    if "entities" in st:
        kinds = sorted({k for c in st["entities"].values() for k in c})
        out.append(
            (
                "Entities per type",
                ["split", *kinds],
                [[s, *[str(c.get(k, 0)) for k in kinds]] for s, c in st["entities"].items()],
            )
        )
    if "lengths" in st:
        keys = ["count", "min", "mean", "p50", "p90", "p99", "max", "over_limit"]
        out.append(
            (
                "Length in tokens",
                ["split", *keys],
                [
                    [s, *[f"{v[k]:g}" if isinstance(v[k], float) else str(v[k]) for k in keys]]
                    for s, v in st["lengths"].items()
                ],
            )
        )
    if "language" in st:
        lang = st["language"]
        out.append(
            (
                "Language (texts of 5+ words identified with p >= 0.99)",
                ["language", "texts"],
                [[k, str(v)] for k, v in lang["languages"].items()]
                + [["(short or unsure)", str(lang["too_short_or_unsure"])]],
            )
        )
    if "label_model" in st:
        lm = st["label_model"]
        out.append(
            (
                "Label-error model",
                ["model", "probe", "folds", "out-of-fold accuracy"],
                [[lm["model"], lm["probe"], str(lm["folds"]), str(lm["out_of_fold_accuracy"])]],
            )
        )
    return out


def _example_rows(f: dict) -> list[list[str]]:
    rows = []
    for r in f["rows"][:SHOWN]:
        extra = {k: v for k, v in r.items() if k not in ("refs", "text", "reason")}
        rows.append(
            [
                ", ".join(r["refs"][:6]) + (f" (+{len(r['refs']) - 6})" if len(r["refs"]) > 6 else ""),
                _short(r.get("text", r.get("reason", ""))),
                _short(json.dumps(extra, ensure_ascii=False), 100) if extra else "",
            ]
        )
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(esc, r)) + " |" for r in rows])


def markdown(data: dict) -> str:
    parts = [f"# Data audit ({data['task']})", ""]
    if data["findings"]:
        parts += [
            "## Findings",
            "",
            _md_table(["severity", "finding", "rows", "what it does"], _summary_rows(data)),
            "",
        ]
    else:
        parts += ["No problems found.", ""]
    for heading, header, rows in _stat_tables(data):
        parts += [f"## {heading}", "", _md_table(header, rows), ""]
    for f in data["findings"]:
        more = f" (first {SHOWN} of {len(f['rows'])}; all in audit.json)" if len(f["rows"]) > SHOWN else ""
        parts += [
            f"## {f['title']}: {f['count']}",
            "",
            f"{f['effect']}{more}.",
            "",
            _md_table(["where", "text", "detail"], _example_rows(f)),
            "",
        ]
    return "\n".join(parts)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
    "vertical-align:top;font-size:14px}th{background:#f3f3f3}.error{color:#b00020;font-weight:bold}.warning{color:#a15c00}"
    ".info{color:#555}.bar{background:#4a7bd0;height:12px;display:inline-block}"
)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='{html.escape(c)}'>{html.escape(c)}</td>"
            if j == 0 and c in _SEVERITY
            else f"<td>{html.escape(c)}</td>"
            for j, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _histogram(data: dict) -> str:
    bins = data["stats"].get("length_histogram")
    if not bins:
        return ""
    top = max(c for _, _, c in bins) or 1
    rows = "".join(
        f"<tr><td>{lo}-{hi}</td><td><span class='bar' style='width:{300 * c / top:.0f}px'></span> {c}</td></tr>"
        for lo, hi, c in bins
    )
    return f"<h2>Length histogram (tokens, all splits)</h2><table>{rows}</table>"


def to_html(data: dict) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Data audit</title><style>{_CSS}</style></head><body>",
        f"<h1>Data audit ({html.escape(data['task'])})</h1>",
    ]
    if data["findings"]:
        parts += [
            "<h2>Findings</h2>",
            _html_table(["severity", "finding", "rows", "what it does"], _summary_rows(data)),
        ]
    else:
        parts.append("<p>No problems found.</p>")
    for heading, header, rows in _stat_tables(data):
        parts += [f"<h2>{html.escape(heading)}</h2>", _html_table(header, rows)]
    parts.append(_histogram(data))
    for f in data["findings"]:
        more = f" (first {SHOWN} of {len(f['rows'])}; all in audit.json)" if len(f["rows"]) > SHOWN else ""
        parts += [
            f"<h2>{html.escape(f['title'])}: {f['count']}</h2>",
            f"<p>{html.escape(f['effect'] + more)}.</p>",
            _html_table(["where", "text", "detail"], _example_rows(f)),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
