"""`tunelab explain RUN --text ... | --data FILE`: token attributions for a run's predictions.

Reads the run, explains each input (integrated gradients with a completeness check, attention rollout),
prints coloured text, and writes explanations.json and explanations.html (into the run folder unless
``out`` names another), then rebuilds the run's report so it shows them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tunelab import runs
from tunelab.errors import TunelabError
from tunelab.evaluation import report
from tunelab.evaluation.explain import render, targets

JSON, HTML = "explanations.json", "explanations.html"


@dataclass
class Request:
    """What to explain and how (``tunelab explain``'s options)."""

    texts: list[str] | None = None  # inputs given on the command line
    data: str | None = None  # else: a file of inputs (the run's data format; causal_lm: one prompt per line)
    text_pair: str | None = None  # classification of pairs: the second text of every input
    opts: targets.Options = field(default_factory=targets.Options)
    max_rows: int = 20  # explain at most this many inputs of ``data``
    out: str | None = None  # write explanations.* here instead of the run folder
    colour: bool = False  # ANSI colours in the terminal output


def run(run_dir: str, req: Request, log=print) -> list[dict]:
    """Explain ``req.texts`` (or the first ``req.max_rows`` inputs of ``req.data``); returns the explanations."""
    texts, data, text_pair, opts, out = req.texts, req.data, req.text_pair, req.opts, req.out
    loaded = runs.load_run(run_dir)
    task = loaded.cfg.task.name
    if task not in targets.EXPLAINERS:
        raise TunelabError(f"{run_dir}: explanations cover {', '.join(targets.EXPLAINERS)} runs; this is a {task} run")
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
    items = items[: req.max_rows]
    explanations = []
    for item in items:
        expl = targets.EXPLAINERS[task](loaded, item, opts)
        explanations.append(expl)
        log(render.terminal(expl, req.colour))
    folder = Path(out) if out else Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON).write_text(json.dumps(explanations, indent=1, ensure_ascii=False), encoding="utf-8")
    (folder / HTML).write_text(
        render.html_page(explanations, f"tunelab explain: {Path(run_dir).name}"), encoding="utf-8"
    )
    if folder == Path(run_dir):
        report.rebuild(Path(run_dir))
    return explanations
