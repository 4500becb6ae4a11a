"""Try a finished run from the dashboard: predict (classification labels, NER spans) or generate (causal LM).

Models load from the run folder alone (runs.load_run / generation.target), at most ``max_loaded`` at a time
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

    def _load(self, folder: Path, task: str):
        if folder in self._models:
            self._models.move_to_end(folder)
            return self._models[folder]
        if task == "causal_lm":
            from tunelab.generation import target

            loaded = target.load(str(folder))
        else:
            from tunelab import runs

            loaded = runs.load_run(folder)
        self._models[folder] = loaded
        while len(self._models) > self.max_loaded:
            self._models.popitem(last=False)
        return loaded

    def predict(self, folder: Path, texts: list[str]) -> list[dict]:
        """Per text: {"label", "probs"} (classification) or {"entities": [...]} (NER, character spans)."""
        from tunelab import runs
        from tunelab.tasks import TASKS

        texts = _check_texts(texts)
        cfg = runs.read_config(runs.check_run_dir(folder))
        task = TASKS[cfg.task]
        if cfg.task == "causal_lm":
            raise TunelabError(f"{folder.name} is a causal_lm run: use generate")
        with self._lock:
            loaded = self._load(folder, cfg.task)
            rows = _rows(task, texts)
            return task.predict(
                loaded.model,
                loaded.tokenizer,
                loaded.labels,
                rows,
                loaded.cfg.model.max_length,
                **task.encode_options(loaded.cfg.data),
            )

    def samples(self, folder: Path, n: int = 8) -> dict:
        """The first ``n`` dev examples with the run's predictions next to the gold answer (classification, NER).

        The dev split is rebuilt as training built it (the same file, or the same seeded split of train), with
        relative data paths taken from the directory the run was trained in. Causal-LM runs keep their dev
        generations in metrics.json (shown in the report), so they are returned from there.
        """
        from tunelab import runs, runstate
        from tunelab.recipes import finetune
        from tunelab.tasks import TASKS

        cfg = runs.read_config(runs.check_run_dir(folder))
        if cfg.task == "causal_lm":
            return {"task": cfg.task, "samples": []}
        cwd = Path(runstate.read_status(folder).get("cwd") or Path.cwd())
        for key in ("train", "dev"):
            value = getattr(cfg.data, key)
            if value and not Path(value).is_absolute() and (cwd / value).exists():
                setattr(cfg.data, key, str(cwd / value))
        task = TASKS[cfg.task]
        rows = finetune.read_splits(cfg, task, lambda m: None)["dev"][:n]
        with self._lock:
            loaded = self._load(folder, cfg.task)
            outputs = task.predict(
                loaded.model,
                loaded.tokenizer,
                loaded.labels,
                rows,
                loaded.cfg.model.max_length,
                **task.encode_options(loaded.cfg.data),
            )
        return {"task": cfg.task, "samples": [_sample(r, o) for r, o in zip(rows, outputs)]}

    def generate(self, folder: Path, prompt: str | None, messages: list[dict] | None, decoding: dict) -> dict:
        """One generation; ``messages`` (chat) use the run's chat template, ``prompt`` continues raw text."""
        from tunelab import runs
        from tunelab.generation import target
        from tunelab.generation.generate import generate

        cfg = runs.read_config(runs.check_run_dir(folder))
        if cfg.task != "causal_lm":
            raise TunelabError(f"{folder.name} is a {cfg.task} run: use predict")
        if (prompt is None) == (messages is None):
            raise TunelabError("generate: give either a prompt or chat messages")
        text = prompt if prompt is not None else "".join(str(m.get("content", "")) for m in messages)
        if not text.strip() or len(text) > MAX_CHARS:
            raise TunelabError(f"generate: the input must be 1 to {MAX_CHARS:,} characters")
        with self._lock:
            tgt = self._load(folder, cfg.task)
            gen = target.with_overrides(tgt.cfg, {k: v for k, v in decoding.items() if v is not None and v != ""})
            if gen.max_new_tokens > MAX_NEW_TOKENS:
                raise TunelabError(f"max_new_tokens: at most {MAX_NEW_TOKENS} in the playground")
            (out,) = generate(
                tgt.model,
                tgt.tokenizer,
                [messages if messages is not None else prompt],
                gen,
                template=tgt.template,
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


def _rows(task, texts: list[str]) -> list:
    """Texts as the task's input rows, parsed as `tunelab predict` parses stdin lines (NER: words with offsets)."""
    if hasattr(task, "read_input"):
        return task.read_input(texts, source="playground")
    from tunelab.data.sources import Row

    return [Row(t, None, None, i + 1) for i, t in enumerate(texts)]


def _sample(row, out: dict) -> dict:
    """One dev example: text, gold and predicted answer (a label, or entity spans as (type, text))."""
    if "entities" in out:
        from tunelab.data import tagging

        gold = [
            {"type": k, "text": row.text[row.offsets[a][0] : row.offsets[b - 1][1]]}
            for a, b, k in tagging.spans(row.tags or [])
        ]
        pred = [{"type": e["type"], "text": e["text"]} for e in out["entities"]]
        return {"text": row.text, "gold": gold, "pred": pred, "correct": gold == pred}
    return {
        "text": row.text if row.text_pair is None else f"{row.text} ||| {row.text_pair}",
        "gold": row.label,
        "pred": out["label"],
        "confidence": out["probs"][out["label"]],
        "correct": str(row.label) == str(out["label"]),
    }
