"""Try a finished run from the dashboard: predict (any task's ``predict``) or generate (tasks that generate).

Only the Task protocol is called (parse_inputs, predict, reference, prompt_template, generates). Models load
from the run folder alone (runs.load_run), at most ``max_loaded`` at a time
(least recently used dropped); one lock serialises model calls, so a busy CPU trains or answers, not both twice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from tunelab.errors import TunelabError

MAX_TEXTS = 64
MAX_CHARS = 20_000
MAX_NEW_TOKENS = 512


class Playground:
    def __init__(self, max_loaded: int = 2):
        self.max_loaded = max_loaded
        self._models: OrderedDict[Path, object] = OrderedDict()
        self._lock = threading.Lock()

    def _load(self, folder: Path):
        """The run rebuilt from its folder (runs.LoadedRun), kept among the ``max_loaded`` most recently used."""
        if folder in self._models:
            self._models.move_to_end(folder)
            return self._models[folder]
        from tunelab import runs

        loaded = runs.load_run(folder)
        self._models[folder] = loaded
        while len(self._models) > self.max_loaded:
            self._models.popitem(last=False)
        return loaded

    def predict(self, folder: Path, texts: list[str]) -> list[dict]:
        """Per text, what the run's task predicts (``task.predict``: classification label + probs, NER
        character spans, ...); each text is parsed as `tunelab predict` parses a stdin line."""
        from tunelab import runs
        from tunelab.tasks import TASKS

        texts = _check_texts(texts)
        task = TASKS[runs.read_config(runs.check_run_dir(folder)).task.name]
        if task.generates:
            raise TunelabError(f"{folder.name} is a {task.name} run: use generate")
        inputs = task.parse_inputs(texts, "playground")
        with self._lock:
            return task.predict(self._load(folder), inputs)

    def samples(self, folder: Path, n: int = 8) -> dict:
        """The first ``n`` dev examples with the run's predictions next to the answer they hold.

        The dev split is rebuilt as training built it (the same file, or the same seeded split of train), with
        relative data paths taken from the directory the run was trained in. Each row becomes a prediction
        input and its answer through ``task.reference``. Generating runs keep their dev generations in
        metrics.json (shown in the report) and get none here: generating on the dashboard's request is slow.
        """
        from tunelab import runs, runstate
        from tunelab.recipes import finetune
        from tunelab.tasks import TASKS

        cfg = runs.read_config(runs.check_run_dir(folder))
        task = TASKS[cfg.task.name]
        if task.generates:
            return {"task": task.name, "samples": []}
        cwd = Path(runstate.read_status(folder).get("cwd") or Path.cwd())
        cfg.data.train = _from(cwd, cfg.data.train)
        cfg.data.dev = _from(cwd, cfg.data.dev)
        rows = finetune.read_splits(cfg, task, lambda m: None)["dev"][:n]
        inputs, answers = zip(*(task.reference(r) for r in rows)) if rows else ((), ())
        with self._lock:
            outputs = task.predict(self._load(folder), list(inputs))
        return {"task": task.name, "samples": [_sample(a, o) for a, o in zip(answers, outputs)]}

    def generate(self, folder: Path, prompt: str | None, messages: list[dict] | None, decoding: dict) -> dict:
        """One generation; ``messages`` (chat) use the run's chat template, ``prompt`` continues raw text."""
        from tunelab import runs
        from tunelab.generation import target
        from tunelab.generation.decode import generate
        from tunelab.tasks import TASKS

        task = TASKS[runs.read_config(runs.check_run_dir(folder)).task.name]
        if not task.generates:
            raise TunelabError(f"{folder.name} is a {task.name} run: use predict")
        if (prompt is None) == (messages is None):
            raise TunelabError("generate: give either a prompt or chat messages")
        text = prompt if prompt is not None else "".join(str(m.get("content", "")) for m in messages)
        if not text.strip() or len(text) > MAX_CHARS:
            raise TunelabError(f"generate: the input must be 1 to {MAX_CHARS:,} characters")
        with self._lock:
            run = self._load(folder)
            gen = target.with_overrides(
                run.cfg.generation, {k: v for k, v in decoding.items() if v is not None and v != ""}
            )
            if gen.max_new_tokens > MAX_NEW_TOKENS:
                raise TunelabError(f"max_new_tokens: at most {MAX_NEW_TOKENS} in the playground")
            (out,) = generate(
                run.model,
                run.tokenizer,
                [messages if messages is not None else prompt],
                gen,
                template=task.prompt_template(run),
                log=lambda m: None,
            )
        return {"text": out.text, "finish_reason": out.finish_reason, "new_tokens": len(out.tokens)}


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise TunelabError("predict: give at least one non-empty text")
    if len(texts) > MAX_TEXTS or sum(map(len, texts)) > MAX_CHARS:
        raise TunelabError(f"predict: at most {MAX_TEXTS} texts and {MAX_CHARS:,} characters per request")
    return texts


def _from(cwd: Path, path: str | None) -> str | None:
    """A data path of the run as the trainer saw it: relative paths are relative to the folder it ran in."""
    if path and not Path(path).is_absolute() and (cwd / path).exists():
        return str(cwd / path)
    return path


def _sample(answer: dict, out: dict) -> dict:
    """One dev example: the input as text, the answer it holds, the prediction of the same keys, and whether
    they agree (scores and other extra keys of the prediction aside)."""
    pred = {k: out.get(k) for k in answer}
    return {"text": out.get("text", ""), "gold": answer, "pred": pred, "out": out, "correct": _agrees(answer, pred)}


def _agrees(gold, pred) -> bool:
    """``pred`` holds ``gold``: equal scalars (as text), lists item by item, dicts on gold's keys."""
    if isinstance(gold, dict):
        return isinstance(pred, dict) and all(k in pred and _agrees(v, pred[k]) for k, v in gold.items())
    if isinstance(gold, list):
        return isinstance(pred, list) and len(gold) == len(pred) and all(map(_agrees, gold, pred))
    return str(gold) == str(pred)
