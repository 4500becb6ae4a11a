"""The run folder: the unit that eval, predict, merge and serve rebuild a model from.

Layout:
    config.yaml      resolved config (every default spelled out)
    fingerprint.json what the run was started on: hashes of the config and of each data split
    labels.json      label names in id order (classification tasks)
    task_state.json  what the task fitted for evaluate/predict (tuned thresholds, target scaling); absent when nothing
    model/           the method's saved weights (HF dir, PEFT adapter, or trainable tensors) + tokenizer;
                     after `quantize`, `prune` or `export`: that format's files and model/format.json naming it
    checkpoints/     resumable checkpoints (last.json points to the newest)
    best/            trainable weights at the best dev metric
    metrics.jsonl    one line per log step and per evaluation
    metrics.json     final dev (and test) metrics
    report.md, *.png human-readable report
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tunelab import config as config_mod
from tunelab.errors import TunelabError
from tunelab.methods import METHODS
from tunelab.tasks import TASKS, Task


@dataclass
class LoadedRun:
    """A model ready to use, with everything a task needs to evaluate or predict with it."""

    cfg: config_mod.RunConfig
    model: object
    tokenizer: object
    labels: list[str] | None
    head: list[str]
    temperature: float = 1.0  # temperature scaling fitted for the run (temperature.json), 1.0 when none
    backend: str = "torch"  # what runs the model: torch, onnxruntime or llamacpp (see tunelab/export/formats.py)
    engine: object | None = None  # a generation engine that replaces transformers' generate (llama.cpp); None = torch
    task_state: dict = field(default_factory=dict)  # Prepared.task_state of the training run (task_state.json)

    @property
    def task(self) -> Task:
        return TASKS[self.cfg.task.name]


def check_writable_dir(path: Path, key: str = "output_dir") -> None:
    """Fail before any work when ``path`` cannot become a folder we write into: a file, or no write permission there.

    Probes by creating (and removing) a file in the folder, or in its nearest existing parent when absent,
    because permission bits do not tell the whole story (read-only mounts, root, ACLs).
    """
    if path.exists() and not path.is_dir():
        raise TunelabError(f"{key} {path}: is a file, not a folder; choose another {key}")
    probe_in = path
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            break
        probe_in = probe_in.parent
    if probe_in.exists() and not probe_in.is_dir():
        raise TunelabError(f"{key} {path}: {probe_in} is a file, not a folder; choose another {key}")
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=probe_in, prefix=".tunelab-write-test-"):
            pass
    except OSError as exc:
        raise TunelabError(f"{key} {path}: cannot write in {probe_in} ({exc.strerror}); choose another {key}") from None


def check_run_dir(run_dir: Path) -> Path:
    if not (run_dir / "config.yaml").is_file():
        raise TunelabError(f"{run_dir}: not a tunelab run folder (no config.yaml)")
    if not (run_dir / "model").is_dir():
        raise TunelabError(f"{run_dir}: run has no saved model yet (did training finish?)")
    return run_dir


def check_single_model(run_dir: Path, step: str) -> None:
    """Refuse a run whose task composes several heads on one encoder (multitask) for a step that writes one plain
    model (merge, quantize, prune, export)."""
    cfg = read_config(run_dir)
    members = TASKS[cfg.task.name].members(cfg)
    if members:
        raise TunelabError(
            f"{run_dir}: a {cfg.task.name} run holds one head per member ({', '.join(members)}); {step} writes one "
            "plain model and does not support it (eval, predict and serve use a member with --task NAME / NAME:MEMBER)"
        )


def read_config(run_dir: Path) -> config_mod.RunConfig:
    """The run's resolved config (folders written by earlier versions are upgraded in memory)."""
    return config_mod.load(Path(run_dir) / "config.yaml", upgrade=True)


def read_labels(run_dir: Path) -> list[str] | None:
    path = run_dir / "labels.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


TASK_STATE = "task_state.json"


def read_task_state(run_dir: Path) -> dict:
    """What the task fitted during training (task_state.json), {} when the folder has none."""
    path = Path(run_dir) / TASK_STATE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def build_base(cfg: config_mod.RunConfig, labels: list[str] | None):
    """Tokenizer, base model for the task, and the task-head module names."""
    from tunelab.models import load as model_load

    task = TASKS[cfg.task.name]
    src = model_load.resolve(cfg.model.name, cfg.model.gguf_file, cfg.model.revision)
    tokenizer = model_load.load_tokenizer(src)
    model, head = task.build_model(cfg, src, labels)
    if cfg.model.dropout is not None:
        model_load.set_dropout(model, cfg.model.dropout)
    if cfg.model.layers is not None:
        from tunelab.models.layers import keep_layers

        keep_layers(model, cfg.model.layers)
    return tokenizer, model, head


def load_run(run_dir: str | Path, backend: str = "auto") -> LoadedRun:
    """Rebuild the trained model from a run folder alone (base model + method weights, or a compressed/exported format).

    ``backend`` picks what runs a format that several back-ends can run (``auto``: the format's default).
    """
    from tunelab.evaluation.calibration import stored_temperature
    from tunelab.export import formats

    run_dir = check_run_dir(Path(run_dir))
    cfg = read_config(run_dir)
    labels = read_labels(run_dir)
    info = formats.read(run_dir)
    if info["format"] != formats.METHOD:  # written by quantize, prune or export: the format rebuilds its own model
        loaded = formats.load(run_dir, cfg, labels, info, backend)
        loaded.temperature = stored_temperature(run_dir)
        loaded.task_state = read_task_state(run_dir)
        return loaded
    formats.choose_backend(formats.METHOD, ("torch",), backend)
    tokenizer, model, head = build_base(cfg, labels)
    method = METHODS[cfg.method.name]
    model = method.load(model, cfg.method, head, run_dir / "model")
    model.eval()
    return LoadedRun(
        cfg, model, tokenizer, labels, head, stored_temperature(run_dir), task_state=read_task_state(run_dir)
    )


# ---------------------------------------------------------------- fingerprint: what a run was started on

FINGERPRINT = "fingerprint.json"


def fingerprint(cfg: config_mod.RunConfig, splits: dict[str, list], sources: dict[str, str]) -> dict:
    """Hashes of the resolved config and of each data split's rows (content, order, slicing, dev split)."""
    import hashlib

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    data = {
        name: {"source": sources.get(name, name), "rows": len(rows), "sha256": digest("\0".join(map(repr, rows)))}
        for name, rows in splits.items()
    }
    return {"config": digest(config_mod.dump(cfg)), "data": data}


def fingerprint_changes(saved: dict, current: dict) -> list[str]:
    """What differs between two fingerprints, one phrase per split (the config is compared key by key elsewhere)."""
    changes = []
    old, new = saved.get("data", {}), current.get("data", {})
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            changes.append(f"{name} data {'added' if a is None else 'removed'}")
        elif a["sha256"] != b["sha256"]:
            changes.append(
                f"{name} data ({b['source']}) changed since the run started ({a['rows']} -> {b['rows']} rows, content differs)"
            )
    return changes


def read_fingerprint(run_dir: Path) -> dict | None:
    path = Path(run_dir) / FINGERPRINT
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
