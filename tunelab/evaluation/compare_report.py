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
        + (f"<p><img src='{SCATTER}'><p><img src='{CURVES}'>" if ok else "")
    )
    (out / "compare.html").write_text(page, encoding="utf-8")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_params(rows: list[dict], metric: str, path: Path) -> None:
    """Dev metric against trainable parameters (log x); the untrained head is a horizontal line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r["status"] == "ok":
            ax.scatter(r["trainable"], r["metric"])
            ax.annotate(
                r["method"], (r["trainable"], r["metric"]), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
        elif r["status"] == "baseline":
            ax.axhline(r["metric"], color="gray", linestyle="--", label="untrained head")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log)")
    ax.set_ylabel(f"dev {metric}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(out: Path, rows: list[dict], metric: str, path: Path) -> None:
    """Training loss and dev metric against steps, every method overlaid."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        train, dev = read_log(out / r["run_dir"])
        ax1.plot([x["step"] for x in train], [x["loss"] for x in train], label=r["method"])
        key = f"dev/{metric}"
        ax2.plot([x["step"] for x in dev if key in x], [x[key] for x in dev if key in x], "o-", label=r["method"])
    ax1.set_xlabel("step")
    ax1.set_ylabel("train loss")
    ax2.set_xlabel("step")
    ax2.set_ylabel(f"dev {metric}")
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
