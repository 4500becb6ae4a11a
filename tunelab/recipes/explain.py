"""`tunelab explain RUN --text ... | --data FILE`: token attributions for a run's predictions.

Reads the run, explains each input (integrated gradients with a completeness check, attention rollout),
prints coloured text, and writes explanations.json and explanations.html (into the run folder unless
``out`` names another), then rebuilds the run's report so it shows them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab import runs
from tunelab.errors import TunelabError
from tunelab.evaluation import report
from tunelab.evaluation.explain import render, targets

JSON, HTML = "explanations.json", "explanations.html"


def run(
    run_dir: str,
    texts: list[str] | None = None,
    data: str | None = None,
    *,
    text_pair: str | None = None,
    opts: targets.Options | None = None,
    max_rows: int = 20,
    out: str | None = None,
    colour: bool = False,
    log=print,
) -> list[dict]:
    """Explain ``texts`` (or the first ``max_rows`` inputs of ``data``); returns the explanations."""
    opts = opts or targets.Options()
    loaded = runs.load_run(run_dir)
    task = loaded.cfg.task
    if opts.target is not None and (loaded.labels is None or opts.target not in loaded.labels):
        raise TunelabError(
            f"--target '{opts.target}': not a label of this run"
            + (f"; labels: {', '.join(loaded.labels)}" if loaded.labels else "")
        )
    opts.temperature = loaded.temperature
    items = (
        [{"text": t, **({"text_pair": text_pair} if text_pair else {})} for t in texts]
        if texts
        else targets.ITEMS[task](loaded, data)
    )
    if not items:
        raise TunelabError(f"{data}: no inputs to explain")
    items = items[:max_rows]
    explanations = []
    for item in items:
        expl = targets.EXPLAINERS[task](loaded, item, opts)
        explanations.append(expl)
        log(render.terminal(expl, colour))
    folder = Path(out) if out else Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON).write_text(json.dumps(explanations, indent=1, ensure_ascii=False), encoding="utf-8")
    (folder / HTML).write_text(
        render.html_page(explanations, f"tunelab explain: {Path(run_dir).name}"), encoding="utf-8"
    )
    if folder == Path(run_dir):
        report.rebuild(Path(run_dir))
    return explanations
