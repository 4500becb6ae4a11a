"""compare plots: every series is visible (markers on short ones) and no method label is hidden."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
from matplotlib.text import Text  # noqa: E402

from tunelab.evaluation import compare_report  # noqa: E402


def _run(tmp_path, name: str, train_points: list[tuple[int, float]], dev_points: list[tuple[int, float]]):
    folder = tmp_path / name
    folder.mkdir()
    lines = [{"step": s, "loss": v} for s, v in train_points] + [{"step": s, "dev/accuracy": v} for s, v in dev_points]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return {"method": name, "run_dir": name, "status": "ok"}


def test_single_point_series_get_markers(tmp_path):
    rows = [
        _run(tmp_path, "lora", [(1, 0.7)], [(1, 0.6)]),
        _run(tmp_path, "full", [(s, 0.7 - s / 100) for s in range(1, 30)], [(29, 0.8)]),
    ]
    compare_report.plot_curves(tmp_path, rows, "accuracy", tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    fig = compare_report.curves_figure(tmp_path, rows, "accuracy")
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert lines["lora"].get_marker() == "o"  # one point: drawn as a dot, not as an invisible line
    assert len(lines["full"].get_xdata()) == 29
    legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    for ax in fig.axes:  # the shared legend sits below both panels
        assert not legend.overlaps(ax.get_window_extent(fig.canvas.get_renderer()))


def test_method_labels_never_overlap_each_other_or_the_legend(tmp_path):
    # LoRA-family methods train the same parameter count and often reach the same metric: their labels collide
    rows = [
        {"method": m, "status": "ok", "trainable": 74_000, "metric": 0.8 + d}
        for m, d in [("lora", 0.0), ("rslora", 0.001), ("dora", 0.0), ("loraplus", 0.002)]
    ]
    rows += [
        {"method": "full", "status": "ok", "trainable": 22_700_000, "metric": 0.79},
        {"method": "bitfit", "status": "ok", "trainable": 40_000, "metric": 0.60},
        {"method": "baseline", "status": "baseline", "metric": 0.5},
    ]
    compare_report.plot_params(rows, "accuracy", tmp_path / "params.png")
    assert (tmp_path / "params.png").stat().st_size > 0
    fig = compare_report.params_figure(rows, "accuracy")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = list(ax.texts)
    assert sorted(t.get_text() for t in labels) == sorted(r["method"] for r in rows if r["status"] == "ok")
    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the label text (a leader line may cross)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), "two method labels overlap"
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(b.overlaps(legend) for b in boxes), "the legend hides a label"
    points = ax.transData.transform([(r["trainable"], r["metric"]) for r in rows if r["status"] == "ok"])
    assert not any(legend.contains(x, y) for x, y in points), "the legend hides a point"
