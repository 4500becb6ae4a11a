"""`tunelab calibrate RUN [--data FILE]`: fit temperature scaling on labelled data and store it in the run.

Writes temperature.json (predict, serve, eval, explain and fairness then divide the logits by it),
calibration.json, error_analysis.json and errors.jsonl, and rebuilds the report.
"""

from __future__ import annotations

from pathlib import Path

from tunelab import runs
from tunelab.errors import TunelabError
from tunelab.evaluation import analysis, calibration, report


def run(run_dir: str, data: str | None = None, *, force: bool = False, log=print) -> dict:
    path = runs.check_run_dir(Path(run_dir))
    cfg = runs.read_config(path)
    analyser = analysis.ANALYSERS.get(cfg.task.name)
    if analyser is None or not analyser.calibrates:
        able = [name for name, a in analysis.ANALYSERS.items() if a.calibrates]
        raise TunelabError(
            f"{run_dir}: temperature scaling applies to runs whose predictions are class probabilities "
            f"({', '.join(able)}); this is a {cfg.task.name} run"
        )
    old = path / calibration.TEMPERATURE_FILE
    if old.is_file() and not force:
        raise TunelabError(
            f"{run_dir}: already has a temperature (T = {calibration.stored_temperature(path):.4f}); "
            "pass --force to fit a new one (nothing was changed)"
        )
    loaded = runs.load_run(path)
    rows = _rows(loaded, data, log)
    if len(rows) < calibration.MIN_EXAMPLES:
        raise TunelabError(
            f"{data or 'the dev split'}: {len(rows)} labelled examples; temperature scaling needs at least "
            f"{calibration.MIN_EXAMPLES}"
        )
    preds = analyser.predict(loaded.model, loaded.tokenizer, loaded.labels, rows, loaded.cfg)
    t = analysis.fit_and_store(path, preds, data or "the run's dev split")
    summary = analysis.write(path, analyser, preds, loaded.labels, loaded.cfg.analysis, t)
    report.rebuild(path)
    cal = summary["calibration"]
    log(
        f"temperature scaling: T = {t:.4f} on {len(rows)} examples; ECE {cal['before']['ece']:.4f} -> {cal['after']['ece']:.4f}"
    )
    return {
        "temperature": t,
        "examples": len(rows),
        **{f"{k}_{s}": cal[s][k] for s in ("before", "after") for k in ("ece", "brier", "nll")},
    }


def _rows(loaded, data: str | None, log) -> list:
    from tunelab.recipes import finetune

    if data:
        return loaded.task.read(loaded.cfg, data).rows
    return finetune.read_splits(loaded.cfg, loaded.task, log)["dev"]
