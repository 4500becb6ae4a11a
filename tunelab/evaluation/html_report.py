"""report.html: one self-contained page per run (inline CSS, PNG as data URIs, SVG inline; no scripts, no network).

Sections appear when their data exists in the run folder: metrics, per-class tables and confusion matrix,
training curves, calibration (calibration.json), error analysis (error_analysis.json), fairness
(fairness.json) and explanations (explanations.json).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

CSS = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:92%}
th{background:#f4f4f4;text-align:left}td.t{text-align:left;max-width:640px}.note{color:#555;font-size:90%}
img{max-width:100%}.w{padding:1px 3px;border-radius:3px;margin:1px;display:inline-block}.expl{border-bottom:1px solid #ddd;padding:6px 0}
.small{color:#555;font-size:90%}nav a{margin-right:1em}
"""


def esc(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape("" if v is None else str(v))


def table(header: list[str], rows: list[list], text_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='t'>{esc(c)}</td>" if i in text_cols else f"<td>{esc(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def png_data_uri(fig) -> str:
    """A matplotlib figure as a data: URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def confusion_html(labels: list[str], matrix: list[list[int]]) -> str:
    """Confusion matrix as a table shaded by each cell's share of its row (rows = true label)."""
    head = "<tr><th>true \\ pred</th>" + "".join(f"<th>{esc(n)}</th>" for n in labels) + "</tr>"
    rows = []
    for i, (name, row) in enumerate(zip(labels, matrix)):
        total = sum(row) or 1
        cells = []
        for j, v in enumerate(row):
            rgb = "40,110,220" if i == j else "220,60,60"  # blue: right, red: confused
            cells.append(f"<td style='background:rgba({rgb},{v / total:.2f})'>{v}</td>")
        rows.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>")
    return f"<table class='confusion'>{head}{''.join(rows)}</table>"


def reliability_svg(before: list[dict], after: list[dict] | None, width: int = 360, height: int = 360) -> str:
    """Reliability diagram as inline SVG: accuracy per confidence bin (bars), the diagonal, and the
    temperature-scaled accuracies as dots when given."""
    pad = 40
    w, h = width - 2 * pad, height - 2 * pad

    def x(v):
        return pad + v * w

    def y(v):
        return pad + (1 - v) * h

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' class='reliability' role='img'>",
        f"<rect x='{pad}' y='{pad}' width='{w}' height='{h}' fill='white' stroke='#888'/>",
        f"<line x1='{x(0)}' y1='{y(0)}' x2='{x(1)}' y2='{y(1)}' stroke='#999' stroke-dasharray='4'/>",
    ]
    for b in before:
        if b["count"]:
            parts.append(
                f"<rect x='{x(b['lo']):.1f}' y='{y(b['accuracy']):.1f}' width='{(b['hi'] - b['lo']) * w:.1f}' "
                f"height='{b['accuracy'] * h:.1f}' fill='rgba(40,110,220,0.55)' stroke='white'>"
                f"<title>{b['lo']:.2f}-{b['hi']:.2f}: {b['count']} examples, accuracy {b['accuracy']:.3f}, "
                f"confidence {b['confidence']:.3f}</title></rect>"
            )
    for b in after or []:
        if b["count"]:
            parts.append(f"<circle cx='{x(b['confidence']):.1f}' cy='{y(b['accuracy']):.1f}' r='4' fill='#e8590c'/>")
    for t in (0, 0.5, 1):
        parts.append(f"<text x='{x(t)}' y='{height - pad + 16}' font-size='11' text-anchor='middle'>{t}</text>")
        parts.append(f"<text x='{pad - 6}' y='{y(t) + 4}' font-size='11' text-anchor='end'>{t}</text>")
    parts.append(f"<text x='{width / 2}' y='{height - 6}' font-size='12' text-anchor='middle'>confidence</text>")
    parts.append(
        f"<text x='12' y='{height / 2}' font-size='12' text-anchor='middle' transform='rotate(-90 12 {height / 2})'>accuracy</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- sections


def _load(run_dir: Path, name: str):
    path = run_dir / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def section_metrics(final: dict, labels: list[str] | None) -> str:
    splits = [s for s in ("baseline", "dev", "test") if s in final]
    scalar = [k for k, v in final["dev"].items() if isinstance(v, float)]
    out = [
        "<section id='metrics'><h2>Metrics</h2>",
        table(["split"] + scalar, [[s] + [final[s].get(k) for k in scalar] for s in splits]),
    ]
    for split in splits:
        m = final[split]
        if "per_class" in m:
            rows = [[n, c["precision"], c["recall"], c["f1"], c["support"]] for n, c in m["per_class"].items()]
            out += [
                f"<h3>Per class ({esc(split)})</h3>",
                table(["label", "precision", "recall", "f1", "support"], rows),
            ]
        if "confusion" in m and labels:
            out += [
                f"<h3 class='confusion-title'>Confusion matrix ({esc(split)}; rows = true label)</h3>",
                confusion_html(labels, m["confusion"]),
            ]
        if m.get("per_type"):
            rows = [[n, c["precision"], c["recall"], c["f1"], c["support"]] for n, c in m["per_type"].items()]
            out += [
                f"<h3>Per entity type ({esc(split)})</h3>",
                table(["type", "precision", "recall", "f1", "support"], rows),
            ]
        if m.get("confusions"):
            out += [
                f"<h3>Most frequent confusions ({esc(split)}; word level)</h3>",
                table(["true", "predicted", "count"], [[c["true"], c["pred"], c["count"]] for c in m["confusions"]]),
            ]
    return "".join(out) + "</section>"


def section_curves(run_dir: Path, metric: str) -> str:
    from tunelab.evaluation import report

    train, dev = report.read_log(run_dir)
    if not (train or dev):
        return ""
    fig = report.curves_figure(train, dev, metric)
    return (
        f"<section id='curves'><h2>Training curves</h2><img alt='training curves' src='{png_data_uri(fig)}'></section>"
    )


def section_calibration(cal: dict | None) -> str:
    if not cal:
        return ""
    rows = [["before scaling", cal["before"]["ece"], cal["before"]["brier"], cal["before"]["nll"]]]
    if "after" in cal:
        rows.append(
            [f"after (T = {cal['temperature']:.3f})", cal["after"]["ece"], cal["after"]["brier"], cal["after"]["nll"]]
        )
    note = (
        f"<p class='note'>Expected calibration error over {cal['bins']} equal-width confidence bins; Brier summed over classes; "
        "bars: accuracy per bin before scaling (the dashed diagonal is perfect calibration); dots: after temperature scaling.</p>"
    )
    svg = reliability_svg(cal["before"]["reliability"], cal.get("after", {}).get("reliability"))
    return (
        "<section id='calibration'><h2>Calibration</h2>"
        + table(["", "ECE", "Brier", "NLL"], rows, (0,))
        + note
        + svg
        + "</section>"
    )


def section_errors(err: dict | None) -> str:
    if not err:
        return ""
    ner = err.get("length_unit") == "words"
    out = [
        f"<section id='errors'><h2>Error analysis</h2><p>{err['mistakes']} mistakes on {err['examples']} dev examples "
        "(all of them, most confident first, in errors.jsonl).</p>"
    ]
    if ner:
        head = ["kind", "span", "true", "predicted", "confidence", "sentence"]
        rows = [
            [m["kind"], m["span"], m["gold"], m["pred"], m["confidence"], m["text"]] for m in err["confident_mistakes"]
        ]
        out += _titled("Most confident wrong entities", head, rows, (1, 5))
    else:
        rows = [[m["confidence"], m["gold"], m["pred"], m["text"]] for m in err["confident_mistakes"]]
        out += _titled("Most confident mistakes", ["confidence", "true", "predicted", "text"], rows, (3,))
    rows = [
        [c["gold"], c["pred"], c["count"], " | ".join(e.get("span", e["text"]) for e in c["examples"])]
        for c in err["confusions"]
    ]
    out += _titled("Confusions with examples", ["true", "predicted", "count", "examples"], rows, (3,))
    key = "f1" if ner else "accuracy"
    rows = [[b["bucket"], b["count"], b[key]] for b in err["length_buckets"]]
    out += [
        f"<h3>{'Entity F1' if ner else 'Accuracy'} by length ({err['length_unit']})</h3>",
        table(["length", "examples", key], rows),
    ]
    return "".join(out) + "</section>"


def _titled(title: str, header: list[str], rows: list[list], text_cols: tuple[int, ...]) -> list[str]:
    """A heading and its table; nothing when there are no rows."""
    return [f"<h3>{esc(title)}</h3>", table(header, rows, text_cols)] if rows else []


def section_fairness(fair: dict | None) -> str:
    if not fair:
        return ""
    from tunelab.evaluation.fairness import report as fairness_report

    return "<section id='fairness'><h2>Fairness</h2>" + fairness_report.html(fair) + "</section>"


def section_explanations(expl: list | None) -> str:
    if not expl:
        return ""
    from tunelab.evaluation.explain import render

    legend = (
        "<p class='note'>Integrated gradients on the input embeddings (green raised the explained probability, red lowered it) "
        "and attention rollout (blue). From <code>tunelab explain</code>.</p>"
    )
    return (
        "<section id='explanations'><h2>Explanations</h2>"
        + legend
        + "".join(render.html_block(e) for e in expl)
        + "</section>"
    )


def page(run_dir: Path, cfg, final: dict, labels: list[str] | None) -> str:
    run_dir = Path(run_dir)
    head = (
        f"<p>model <code>{esc(cfg.model.name)}</code>, task <code>{esc(cfg.task.name)}</code>, method <code>{esc(cfg.method.name)}</code>, "
        f"{final['trainable_parameters']:,} of {final['total_parameters']:,} parameters trained, {final['steps']} steps in "
        f"{final['train_seconds']} s (best at step {final['best_step']}).</p>"
    )
    sections = [
        section_metrics(final, labels),
        section_curves(run_dir, cfg.train.metric),
        section_calibration(_load(run_dir, "calibration.json")),
        section_errors(_load(run_dir, "error_analysis.json")),
        section_fairness(_load(run_dir, "fairness.json")),
        section_explanations(_load(run_dir, "explanations.json")),
    ]
    sections = [s for s in sections if s]
    nav = "<nav>" + "".join(f"<a href='#{s.split(chr(39))[1]}'>{s.split(chr(39))[1]}</a>" for s in sections) + "</nav>"
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>tunelab run: {esc(run_dir.name)}</title>"
        f"<style>{CSS}</style></head><body><h1>tunelab run: {esc(run_dir.name)}</h1>{head}{nav}{''.join(sections)}</body></html>"
    )


def write(run_dir: Path, cfg, final: dict, labels: list[str] | None) -> Path:
    out = Path(run_dir) / "report.html"
    out.write_text(page(run_dir, cfg, final, labels), encoding="utf-8")
    return out
