"""report.md and training-curve plots for a run folder."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.evaluation import html_report
from tunelab.evaluation import report_extras as extras

PLOT = "training.png"


def read_log(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(train log records, dev evaluation records) from metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    records = (
        [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()] if path.is_file() else []
    )
    return [r for r in records if "loss" in r], [r for r in records if any(k.startswith("dev/") for k in r)]


def plot_curves(train: list[dict], dev: list[dict], metric: str, out: Path) -> None:
    """Training loss and the dev metric against optimizer steps, side by side, saved as a PNG."""
    fig = curves_figure(train, dev, metric)
    import matplotlib.pyplot as plt

    fig.savefig(out, dpi=100)
    plt.close(fig)


def curves_figure(train: list[dict], dev: list[dict], metric: str):
    """The training-curves figure (the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(
        [r["step"] for r in train],
        [r["loss"] for r in train],
        marker="o" if len(train) < 10 else None,
        markersize=4,
        label="train loss",
    )  # a marker keeps a short (even one-point) series visible
    if any("dev/loss" in r for r in dev):
        ax1.plot(
            [r["step"] for r in dev if "dev/loss" in r],
            [r["dev/loss"] for r in dev if "dev/loss" in r],
            "o-",
            label="dev loss",
        )
    ax1.set_xlabel("step")
    ax1.set_ylabel("loss")
    ax1.legend()
    key = f"dev/{metric}"
    ax2.plot([r["step"] for r in dev if key in r], [r[key] for r in dev if key in r], "o-", color="tab:green")
    ax2.set_xlabel("step")
    ax2.set_ylabel(f"dev {metric}")
    fig.tight_layout()
    return fig


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write(run_dir: Path, cfg, final: dict, labels: list[str] | None) -> Path:
    """Write report.md (metrics, per-class table, confusion matrix, curves) into the run folder."""
    run_dir = Path(run_dir)
    train, dev = read_log(run_dir)
    if train or dev:
        plot_curves(train, dev, cfg.train.metric, run_dir / PLOT)
    parts = [
        f"# tunelab run: {run_dir.name}",
        "",
        f"model `{cfg.model.name}`, task `{cfg.task.name}`, method `{cfg.method.name}`, "
        f"{final['trainable_parameters']:,} of {final['total_parameters']:,} parameters trained, "
        f"{final['steps']} steps in {final['train_seconds']} s (best at step {final['best_step']}).",
        "",
    ]
    if "precision" in final:
        parts += [f"Precision: {final['precision']['name']} ({final['precision']['reason']}).", ""]
    splits = [s for s in ("baseline", "dev", "test") if s in final]  # baseline: dev metrics of the untuned model
    scalar = [k for k, v in final["dev"].items() if isinstance(v, float)]
    parts += [
        "## Metrics",
        "",
        markdown_table(["split"] + scalar, [[s] + [final[s][k] for k in scalar] for s in splits]),
        "",
    ]
    for split in splits:
        parts += _per_class(final[split], split, labels)
        parts += _per_type(final[split], split)
    parts += _distill(final.get("distill"), final)
    parts += _data(final.get("data")) + _samples(final.get("baseline", {}).get("samples"), final["dev"].get("samples"))
    if train or dev:
        parts += ["## Training curves", "", f"![training curves]({PLOT})", ""]
    parts += extras.markdown(run_dir)
    out = run_dir / "report.md"
    out.write_text("\n".join(parts), encoding="utf-8")
    html_report.write(run_dir, cfg, final, labels)
    return out


def rebuild(run_dir: Path) -> Path:
    """Rewrite report.md and report.html of a finished run (after calibrate, fairness or explain added results)."""
    from tunelab import runs

    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    if not path.is_file():
        return run_dir / "report.md"
    final = json.loads(path.read_text(encoding="utf-8"))
    return write(run_dir, runs.read_config(run_dir), final, runs.read_labels(run_dir))


def _per_class(metrics: dict, split: str, labels: list[str] | None) -> list[str]:
    if "per_class" not in metrics:
        return []
    rows = [[name, m["precision"], m["recall"], m["f1"], m["support"]] for name, m in metrics["per_class"].items()]
    out = [f"## Per class ({split})", "", markdown_table(["label", "precision", "recall", "f1", "support"], rows), ""]
    if "confusion" in metrics and labels:
        conf = [[labels[i]] + row for i, row in enumerate(metrics["confusion"])]
        out += [
            f"Confusion matrix ({split}; rows = true label, columns = predicted):",
            "",
            markdown_table(["true \\ pred"] + labels, conf),
            "",
        ]
    return out


def _distill(info: dict | None, final: dict) -> list[str]:
    """Teacher vs student (distillation runs): dev metrics and parameter counts side by side."""
    if not info:
        return []
    keys = [k for k in info["teacher_dev"] if k in final["dev"]]
    rows = [
        ["teacher", f"{info['teacher_parameters']:,}"] + [info["teacher_dev"][k] for k in keys],
        ["student", f"{info['student_parameters']:,}"] + [final["dev"][k] for k in keys],
    ]
    return [
        "## Teacher vs student",
        "",
        f"Teacher `{info['teacher']}`; its targets ({info['teacher_items']:,} items) were computed once and cached.",
        "",
        markdown_table(["model", "parameters"] + [f"dev {k}" for k in keys], rows),
        "",
    ]


def _data(info: dict | None) -> list[str]:
    """Example counts per split (kept / truncated / dropped), the padding fraction of training batches, and the
    class weights of the loss."""
    if not info:
        return []
    rows = [
        [name, v["examples"], v["kept"], v["truncated"], v["dropped"]]
        for name, v in info.items()
        if isinstance(v, dict) and "examples" in v
    ]
    out = ["## Data", ""]
    if rows:
        out += [markdown_table(["split", "examples", "kept", "truncated", "dropped"], rows), ""]
    if "class_weights" in info:
        weights = ", ".join(f"{k} {v:.3g}" for k, v in info["class_weights"].items())
        out += [f"Class weights in the loss (train.class_weights): {weights}.", ""]
    if "padding_fraction" in info:
        out += [
            f"Training rows: {info.get('train_rows')}; padding fraction of training batches: {info['padding_fraction']:.1%}.",
            "",
        ]
    return out


def _samples(before: list[dict] | None, after: list[dict] | None) -> list[str]:
    """A few dev generations before and after tuning, next to the reference."""
    if not after:
        return []
    out = ["## Sample generations (dev, greedy)", ""]
    for i, a in enumerate(after):
        b = before[i] if before and i < len(before) else None
        out += [f"**Prompt {i + 1}:** {_quote(a['prompt'])}", "", f"- reference: {_quote(a['reference'])}"]
        if b:
            out.append(f"- before tuning ({b['finish_reason']}): {_quote(b['output'])}")
        out += [f"- after tuning ({a['finish_reason']}): {_quote(a['output'])}", ""]
    return out


def _quote(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _per_type(metrics: dict, split: str) -> list[str]:
    """Tables for span-level tasks: metrics["per_type"] ({type: {precision, recall, f1, support}}) and
    metrics["confusions"] ([{true, pred, count}], most frequent first); either may be absent."""
    out = []
    if metrics.get("per_type"):
        rows = [[name, m["precision"], m["recall"], m["f1"], m["support"]] for name, m in metrics["per_type"].items()]
        out += [
            f"## Per entity type ({split})",
            "",
            markdown_table(["type", "precision", "recall", "f1", "support"], rows),
            "",
        ]
    if metrics.get("confusions"):
        rows = [[c["true"], c["pred"], c["count"]] for c in metrics["confusions"]]
        out += [
            f"Most frequent confusions ({split}; word level, O = no entity):",
            "",
            markdown_table(["true", "predicted", "count"], rows),
            "",
        ]
    return out
