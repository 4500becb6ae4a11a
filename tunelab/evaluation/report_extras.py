"""report.md sections for results other commands add to a run folder (calibration, error analysis, fairness, explanations)."""

from __future__ import annotations

import json
from pathlib import Path


def _load(run_dir: Path, name: str):
    path = Path(run_dir) / name
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _table(header: list[str], rows: list[list]) -> str:
    from tunelab.evaluation.report import markdown_table

    return markdown_table(
        header, [[str(c).replace("|", "/").replace("\n", " ") if isinstance(c, str) else c for c in r] for r in rows]
    )


def markdown(run_dir: Path) -> list[str]:
    return (
        _calibration(_load(run_dir, "calibration.json"))
        + _errors(_load(run_dir, "error_analysis.json"))
        + _fairness(_load(run_dir, "fairness.json"))
        + _explanations(_load(run_dir, "explanations.json"))
    )


def _calibration(cal: dict | None) -> list[str]:
    if not cal:
        return []
    rows = [["before scaling", cal["before"]["ece"], cal["before"]["brier"], cal["before"]["nll"]]]
    if "after" in cal:
        rows.append(
            [f"after (T = {cal['temperature']:.3f})", cal["after"]["ece"], cal["after"]["brier"], cal["after"]["nll"]]
        )
    return [
        "## Calibration (dev)",
        "",
        _table(["", "ECE", "Brier", "NLL"], rows),
        "",
        f"ECE over {cal['bins']} equal-width confidence bins; the reliability diagram is in report.html.",
        "",
    ]


def _errors(err: dict | None) -> list[str]:
    if not err:
        return []
    out = [
        "## Error analysis (dev)",
        "",
        f"{err['mistakes']} mistakes on {err['examples']} examples; all of them in errors.jsonl.",
        "",
    ]
    if err["confident_mistakes"]:
        key = "span" if err.get("length_unit") == "words" else "text"
        rows = [[m["confidence"], m["gold"], m["pred"], m[key][:160]] for m in err["confident_mistakes"]]
        out += ["Most confident mistakes:", "", _table(["confidence", "true", "predicted", key], rows), ""]
    metric = "f1" if err.get("length_unit") == "words" else "accuracy"
    out += [
        f"By length ({err['length_unit']}):",
        "",
        _table(["length", "examples", metric], [[b["bucket"], b["count"], b[metric]] for b in err["length_buckets"]]),
        "",
    ]
    return out


def _fairness(fair: dict | None) -> list[str]:
    if not fair:
        return []
    from tunelab.evaluation.fairness import report as fairness_report

    return ["## Fairness", "", *fairness_report.markdown(fair), ""]


def _explanations(expl: list | None) -> list[str]:
    if not expl:
        return []
    return ["## Explanations", "", f"{len(expl)} explained inputs: see explanations.html or report.html.", ""]
