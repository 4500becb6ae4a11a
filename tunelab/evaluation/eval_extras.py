"""What `tunelab eval` adds to a task's metrics: calibration before/after the run's temperature, error analysis."""

from __future__ import annotations

from pathlib import Path

from tunelab.evaluation import analysis, calibration, error_analysis


def analyse(loaded, run_dir: Path, rows: list, errors_path: str | None, log) -> dict:
    """{"calibration": ..., "error_analysis": ...} for tasks that have an analyser; writes ``errors_path`` when given."""
    analyser = analysis.ANALYSERS.get(loaded.cfg.task.name)
    if analyser is None:
        if errors_path:
            log(f"note: no error analysis for {loaded.cfg.task.name} runs; {errors_path} not written")
        return {}
    preds = analyser.predict(loaded.model, loaded.tokenizer, loaded.labels, rows, loaded.cfg)
    has_t = (run_dir / calibration.TEMPERATURE_FILE).is_file()
    t = calibration.stored_temperature(run_dir) if has_t else None
    summary = analyser.summarise(preds, loaded.labels, loaded.cfg.analysis, t)
    if errors_path:
        error_analysis.write_jsonl(analyser.mistakes(preds, loaded.labels, t or 1.0), Path(errors_path))
        log(f"mistakes written to {errors_path}")
    out = {"error_analysis": {k: v for k, v in summary["errors"].items() if k != "confident_mistakes"}}
    if "calibration" in summary:
        cal = summary["calibration"]
        out["calibration"] = {
            "bins": cal["bins"],
            "temperature": t,
            **{s: {k: cal[s][k] for k in ("ece", "brier", "nll")} for s in ("before", "after") if s in cal},
        }
        if t is None:
            out["calibration"]["note"] = "the run has no fitted temperature (tunelab calibrate RUN fits one)"
    return out
