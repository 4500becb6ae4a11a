"""compare.md, compare.html and plots for `tunelab compare` (one row per method plus the untrained-head baseline)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from tunelab.evaluation.report import markdown_table, read_log

HEADER = [
    "method",
    "dev {metric}",
    "trainable params",
    "trainable %",
    "adapter size",
    "train time (s)",
    "tokens/s",
    "peak RSS (MiB)",
    "lr",
    "status",
]
SCATTER, CURVES = "compare_params.png", "compare_curves.png"


def table_rows(rows: list[dict]) -> list[list]:
    def num(row, key, fmt="{:,}"):
        return fmt.format(row[key]) if row.get(key) is not None else "-"

    out = []
    for r in rows:
        pct = f"{100 * r['trainable'] / r['total']:.3f}" if r.get("total") else "-"
        size = f"{r['adapter_bytes'] / 2**20:.2f} MiB" if r.get("adapter_bytes") is not None else "-"
        status = r["status"] if not r.get("error") else f"{r['status']}: {r['error']}"
        out.append(
            [
                r["method"],
                num(r, "metric", "{:.4f}"),
                num(r, "trainable"),
                pct,
                size,
                num(r, "train_seconds", "{}"),
                num(r, "tokens_per_s", "{:,.0f}"),
                num(r, "peak_rss_mb", "{:,.0f}"),
                num(r, "lr", "{:g}"),
                status.replace("|", "/"),
            ]
        )
    return out


def write(out: Path, rows: list[dict], metric: str) -> None:
    header = [h.format(metric=metric) for h in HEADER]
    body = table_rows(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    if ok:
        plot_params(rows, metric, out / SCATTER)
        plot_curves(out, ok, metric, out / CURVES)
    notes = (
        "Same data, seed and step budget for every method. Trainable % is of the model's parameters after the method is applied. "
        "Adapter size is the weight files the run saves. tokens/s is the mean over the training log windows. "
        "Peak RSS is the training process's maximum resident memory (getrusage via os.wait4), Python and torch included."
    )
    md = ["# tunelab compare", "", notes, "", markdown_table(header, body), ""]
    if ok:
        md += [f"![dev {metric} vs trainable parameters]({SCATTER})", "", f"![training curves]({CURVES})", ""]
    (out / "compare.md").write_text("\n".join(md), encoding="utf-8")
    (out / "compare.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in body)
    page = (
        f"<!doctype html><meta charset='utf-8'><title>tunelab compare</title><h1>tunelab compare</h1><p>{html.escape(notes)}</p>"
        "<table border='1' cellpadding='4' style='border-collapse:collapse'><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header)
        + f"</tr>{cells}</table>"
        + (
            f"<p><img alt='dev metric vs trainable parameters' src='{_data_uri(out / SCATTER)}'>"
            f"<p><img alt='training curves' src='{_data_uri(out / CURVES)}'>"
            if ok
            else ""
        )
    )
    (out / "compare.html").write_text(page, encoding="utf-8")


def _data_uri(png: Path) -> str:
    """The PNG inlined, so compare.html stands alone (no files beside it, no network)."""
    import base64

    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_params(rows: list[dict], metric: str, path: Path) -> None:
    """Dev metric against trainable parameters (log x); the untrained head is a horizontal line.

    Every method's label stays readable: the legend sits below the axes (it cannot cover a point),
    labels of nearby points are stacked apart, and the figure grows to hold them.
    """
    fig = params_figure(rows, metric)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)


def params_figure(rows: list[dict], metric: str):
    """The figure of ``plot_params`` (kept open, for tests and callers that embed it)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        ax.scatter(r["trainable"], r["metric"], zorder=3)
    for r in rows:
        if r["status"] == "baseline":
            ax.axhline(r["metric"], color="gray", linestyle="--", label="untrained head")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log)")
    ax.set_ylabel(f"dev {metric}")
    ax.margins(x=0.15, y=0.15)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    fig.tight_layout()
    place_labels(fig, ax, [(r["trainable"], r["metric"], r["method"]) for r in ok])
    return fig


def place_labels(fig, ax, points: list[tuple[float, float, str]], pad_px: float = 2.0) -> list:
    """Annotate each (x, y, text) next to its point, moving a label up (then down) until it overlaps no other.

    Returns the annotation artists. Written by hand: matplotlib has no label-overlap avoidance, and the
    usual package (adjustText) is a dependency for twelve labels.
    """
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed, boxes = [], []
    for x, y, text in sorted(points, key=lambda p: (p[1], p[0])):
        ann = None
        for dy in _offsets():
            if ann is not None:
                ann.remove()
            leader = {"arrowprops": {"arrowstyle": "-", "lw": 0.5, "color": "gray"}} if dy != 3.0 else {}
            ann = ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=(8 if leader else 5, dy),
                fontsize=8,
                annotation_clip=False,
                zorder=4,
                va="center" if leader else "baseline",
                **leader,
            )
            ann.update_positions(renderer)
            box = Text.get_window_extent(ann, renderer).padded(pad_px)  # the text alone, not its leader line
            if not any(box.overlaps(b) for b in boxes):
                break
        boxes.append(box)
        placed.append(ann)
    return placed


def _offsets(step: float = 9.0, tries: int = 40):
    """Vertical offsets in points to try: 3, then alternately further up and down."""
    yield 3.0
    for i in range(1, tries):
        yield 3.0 + step * i
        yield 3.0 - step * i


def marker_for(n_points: int) -> str | None:
    """Short series get a marker on each point: a single-point series is otherwise drawn as nothing."""
    return "o" if n_points < 10 else None


def plot_curves(out: Path, rows: list[dict], metric: str, path: Path) -> None:
    """Training loss and dev metric against steps, every method overlaid."""
    fig = curves_figure(out, rows, metric)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def curves_figure(out: Path, rows: list[dict], metric: str):
    """The figure of ``plot_curves`` (kept open)."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        train, dev = read_log(out / r["run_dir"])
        xs, ys = [x["step"] for x in train], [x["loss"] for x in train]
        ax1.plot(xs, ys, marker=marker_for(len(xs)), markersize=4, label=r["method"])
        key = f"dev/{metric}"
        ax2.plot(
            [x["step"] for x in dev if key in x],
            [x[key] for x in dev if key in x],
            "o-",
            markersize=4,
            label=r["method"],
        )
    ax1.set_xlabel("step")
    ax1.set_ylabel("train loss")
    ax2.set_xlabel("step")
    ax2.set_ylabel(f"dev {metric}")
    handles, labels = ax2.get_legend_handles_labels()
    if handles:  # one legend for both panels, below them: it never covers a curve
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.04 * ((len(labels) - 1) // 6), 1, 1))
    return fig
