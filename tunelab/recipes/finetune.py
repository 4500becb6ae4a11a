"""`tunelab train`: config -> data -> model -> method -> task.prepare -> loop -> best weights -> run folder + report.

Runs the same under ``accelerate launch`` / ``torchrun``: every process reads the data and builds the model,
the loop splits each batch over the processes, and only the main process writes the run folder.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunelab import config as config_mod
from tunelab import hardware, runs, runstate
from tunelab.errors import TunelabError
from tunelab.evaluation import custom, report
from tunelab.methods import METHODS
from tunelab.methods.base import count_parameters
from tunelab.tasks import TASKS, Task
from tunelab.training import checkpoint, distributed, loop, optim, speed, trackers
from tunelab.training.tracking import JsonlTracker, Tracker, Trackers


class Extension:
    """What another recipe (distillation, ...) adds to a fine-tuning run; every hook adds nothing by default.

    The run calls ``splits`` (None: read the config's data files), ``label_space`` on the training rows,
    ``extra_splits`` after reading the data (the splits join the run's fingerprint, so a resume on
    changed extra data is refused, and are encoded by ``task.prepare`` like the others), then ``adapt`` once the
    task prepared the features and the method was applied (replace the objective, features or collate, add
    callbacks and trainable modules there), and ``metrics`` after training (merged into metrics.json).
    """

    def splits(self, cfg: config_mod.RunConfig, task: Task, log) -> dict[str, list] | None:
        """The run's own train/dev(/test) rows when the extension supplies them (a federated client trains on its
        partition, held in memory), or None to read ``data.train``/``dev``/``test`` as usual."""
        return None

    def extra_splits(self, cfg: config_mod.RunConfig, task: Task, log) -> dict[str, list]:
        """Further named row lists to encode with the run's splits (e.g. unlabelled transfer text)."""
        return {}

    def label_space(self, task: Task, rows: list, source: str) -> list[str] | None:
        """The run's label names (default: the task's, from the training rows). A federated client uses the
        federation's labels, whatever classes its own rows hold, so every client's head has the same shape."""
        return task.label_space(rows, source)

    def adapt(self, setup: "Setup") -> None:
        """Change ``setup`` in place before the loop starts."""

    def metrics(self) -> dict:
        """Entries for metrics.json (and the report) after training."""
        return {}


@dataclass
class Setup:
    """A run as ``Extension.adapt`` sees it: ``prepared`` and ``callbacks`` may be replaced or extended; modules in
    ``modules`` train with the model (their parameters join the optimizer; a callback keeps their state)."""

    cfg: config_mod.RunConfig
    task: Task
    model: object
    tokenizer: object
    labels: list[str] | None
    splits: dict[str, list]
    prepared: object
    run_dir: Path
    log: object
    callbacks: list = field(default_factory=list)
    modules: list = field(default_factory=list)


def run(
    cfg: config_mod.RunConfig,
    *,
    quiet: bool = False,
    log=print,
    callbacks=(),
    resume_anyway: bool = False,
    extension: Extension | None = None,
) -> dict:
    """Train per ``cfg`` into ``cfg.output_dir`` (resuming if interrupted); returns the final metrics.

    ``resume_anyway`` continues an interrupted run although its config or training data changed (refused otherwise).
    ``extension`` lets another recipe add data, loss terms and callbacks (see Extension).
    Raises ``training.interrupt.Interrupted`` after saving a checkpoint when SIGINT/SIGTERM stopped training.
    """
    from tunelab.models import load as model_load

    task = TASKS[cfg.task.name]
    cfg = resolve(cfg, task)
    custom.load(cfg.eval.metrics)  # a missing or broken metric file fails before any work
    src = model_load.resolve(
        cfg.model.name, cfg.model.gguf_file, cfg.model.revision
    )  # a bad model name fails before any work
    cfg = fit_max_length(cfg, src, log)
    seed_everything(cfg.train.seed, cfg.train.threads)  # threads first: auto's matmul measurement uses them
    cfg, precision = choose_precision(cfg)
    log = log if distributed.is_main_process() else _silent
    if (warning := distributed.launcher_warning()) is not None:
        log(warning)
    run_dir = prepare_run_dir(cfg, resume_anyway, log)
    # run.lock, status.json and train.log (what `tunelab ui` reads); the loop reports into it as a Tracker
    with runstate.active(run_dir, log, main=distributed.is_main_process()) as session:
        extras = _Extras(None, callbacks, session.log, quiet, run_dir)
        extras.extension = extension or Extension()
        return _train(cfg, task, precision, session, extras, resume_anyway)


def _train(cfg: config_mod.RunConfig, task: Task, precision, session: runstate.Session, extras, resume_anyway) -> dict:
    """Everything after the run folder is claimed: data, model, method, the loop, the run folder's files."""
    log, run_dir = extras.log, extras.run_dir
    log(hardware.slow_bf16_warning(precision) or f"precision: {precision.name} ({precision.reason})")
    splits = extras.extension.splits(cfg, task, log) or read_splits(cfg, task, log)
    splits.update(extras.extension.extra_splits(cfg, task, log))
    check_data(run_dir, cfg, splits, resume_anyway, log)
    labels = extras.extension.label_space(task, splits["train"], cfg.data.train)
    tokenizer, model, head = runs.build_base(cfg, labels)
    method = METHODS[cfg.method.name]
    model = method.apply(model, cfg.method, head)
    trainable, total = count_parameters(model)
    log(f"{cfg.method.name}: training {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")
    session.note(trainable_parameters=trainable, total_parameters=total)
    prepared = task.prepare(cfg, tokenizer, labels, splits, log)
    prepared.collate = speed.bucketed(prepared.collate, cfg.speed.pad_multiple)
    add_user_metrics(cfg, prepared)
    setup = Setup(cfg, task, model, tokenizer, labels, splits, prepared, run_dir, log)
    extras.extension.adapt(setup)
    prepared = setup.prepared
    extras.callbacks += setup.callbacks
    extras.modules = setup.modules
    extras.method = method
    extras.rebuild = lambda: plain_model(cfg, labels, method)
    extras.tracker = run_trackers(cfg, session.tracker, trainable, total, log)
    final, model = train_and_evaluate(cfg, model, prepared, extras)
    final.update(extras.extension.metrics())
    final.update(
        trainable_parameters=trainable,
        total_parameters=total,
        precision={"name": precision.name, "reason": precision.reason},
    )
    if distributed.is_main_process():
        export(model, tokenizer, method, labels, run_dir)
        if prepared.task_state:  # after the final evaluation, which may have tuned part of it (thresholds)
            checkpoint.write_json_atomic(run_dir / runs.TASK_STATE, prepared.task_state)
        checkpoint.write_json_atomic(run_dir / "metrics.json", final)
        # after the run is complete: a problem here never costs the trained model (`tunelab calibrate` redoes it)
        from tunelab.evaluation import analysis

        analysis.after_training(run_dir, cfg, model, tokenizer, labels, splits["dev"], log)
        report.write(run_dir, cfg, final, labels)
        files = [run_dir / n for n in ("report.md", "metrics.json", "config.yaml", report.PLOT)]
        extras.tracker.summary(final, [f for f in files if f.is_file()])
        freed = checkpoint.keep_after_finish(run_dir, cfg.train.keep_checkpoints)
        checkpoint.fix_modes(run_dir)
        if freed:
            log(
                f"train.keep_checkpoints={cfg.train.keep_checkpoints}: removed {freed / 2**20:.1f} MiB of checkpoint state"
            )
    return final


def run_trackers(cfg: config_mod.RunConfig, status: Tracker, trainable: int, total: int, log) -> Tracker:
    """Where the loop's records go: metrics.jsonl, the run status the dashboard reads, and the ``tracking:``
    back-ends (given the resolved config and parameter counts as hyper-parameters)."""
    params = {**cfg.model_dump(mode="json"), "trainable_parameters": trainable, "total_parameters": total}
    if cfg.tracking.backends:
        log(f"tracking: {', '.join(cfg.tracking.backends)}")
    return Trackers(JsonlTracker(), status, *trackers.build(cfg.tracking, params))


class _Extras:
    """What train_and_evaluate needs besides the config, model and prepared data (``method`` is set once the
    run has built it)."""

    def __init__(self, method, callbacks, log, quiet: bool, run_dir: Path):
        self.method, self.callbacks, self.log, self.quiet, self.run_dir = method, list(callbacks), log, quiet, run_dir
        self.rebuild = (
            None  # () -> a fresh model with the method applied (after FSDP/DeepSpeed sharded the trained one)
        )
        self.tracker: Tracker | None = None  # where the loop's records go (None: metrics.jsonl only)
        self.extension = Extension()
        self.modules: list = []  # extra trainable modules (an extension's projection...): optimised with the model


def plain_model(cfg: config_mod.RunConfig, labels, method):
    """The base model with the method applied, as before training (its trained weights come from a checkpoint)."""
    _, model, head = runs.build_base(cfg, labels)
    return method.apply(model, cfg.method, head)


def train_and_evaluate(cfg: config_mod.RunConfig, model, prepared, extras: _Extras) -> tuple[dict, object]:
    """Baseline (if the task wants one), the loop, the best weights back in, final dev (and test) metrics.

    Returns the metrics and the model holding the best weights (a plain rebuilt copy when FSDP/DeepSpeed sharded
    the trained one: the best checkpoint holds full weights).
    """
    state = distributed.state()
    model.to(state.device)
    for module in extras.modules:
        module.to(state.device)
    task = TASKS[cfg.task.name]
    baseline = {"baseline": distributed.evaluate(state, model, prepared.evaluate_final)} if prepared.baseline else {}
    callbacks = [*extras.callbacks, *training_callbacks(model, cfg, extras.method, len(prepared.features["train"]))]
    groups = optim.with_modules(
        optim.groups_builder(extras.method.param_groups, cfg.method, cfg.train.llrd), extras.modules
    )
    job = loop.Job(
        model,
        prepared.features["train"],
        prepared.objective,
        prepared.collate,
        cfg.train,
        extras.run_dir,
        evaluator=prepared.evaluate,
        metric=custom.chosen(task, cfg.train.metric, custom.load(cfg.eval.metrics)),
        sampler=sampler(cfg, prepared),
        callbacks=callbacks,
        param_groups=groups,
        tracker=extras.tracker,
        log=extras.log,
        quiet=extras.quiet,
    )
    start = time.perf_counter()
    with speed.applied(
        model, cfg.speed, cfg.train.precision, all(p.requires_grad for p in model.parameters()), extras.log
    ):
        loop_state = loop.train(job)
    seconds = round(time.perf_counter() - start, 1)
    if loop_state.sharded:
        model = extras.rebuild().to(state.device)
    loop.load_best(model, extras.run_dir)
    final = {
        "best_step": loop_state.best_step,
        "steps": loop_state.step,
        "train_seconds": seconds,
        **baseline,
        "dev": distributed.evaluate(state, model, prepared.evaluate_final),
    }
    if prepared.evaluate_test is not None:
        final["test"] = distributed.evaluate(state, model, prepared.evaluate_test)
    if prepared.info:
        final["data"] = prepared.info
    return final, model


def add_user_metrics(cfg: config_mod.RunConfig, prepared) -> None:
    """Wrap the prepared evaluators so their summaries hold the user's own metrics (eval.metrics)."""
    user = custom.load(cfg.eval.metrics)
    prepared.evaluate = custom.with_user_metrics(prepared.evaluate, user, cfg.task.name)
    prepared.evaluate_final = custom.with_user_metrics(prepared.evaluate_final, user, cfg.task.name)
    prepared.evaluate_test = custom.with_user_metrics(prepared.evaluate_test, user, cfg.task.name)


def sampler(cfg: config_mod.RunConfig, prepared):
    """The loop's sampler: the task's own (multi-task mixing), None (the loop's length-grouped default), or the
    class-balanced one (``train.sampler``)."""
    if prepared.sampler is not None:
        return prepared.sampler
    if cfg.train.sampler != "balanced":
        return None
    from tunelab.training.sampler import Balanced

    if prepared.groups is None:  # the config refuses this for tasks that do not balance; a task that forgot groups
        raise TunelabError(f"train.sampler=balanced: task {cfg.task.name} gave no classes to balance")
    return Balanced(prepared.groups, cfg.train.batch_size, cfg.train.seed)


def training_callbacks(model, cfg: config_mod.RunConfig, method, n_train: int) -> list:
    """Callbacks a method asks for (e.g. AdaLoRA's rank schedule) plus gradual unfreezing when configured."""
    out = list(method.callbacks(model, cfg.method))
    every = cfg.train.gradual_unfreeze_every
    if every is not None:
        from tunelab.training.unfreeze import GradualUnfreeze

        out.append(GradualUnfreeze(math.ceil(n_train / cfg.train.batch_size) if every == "epoch" else every))
    return out


def resolve(cfg: config_mod.RunConfig, task: Task) -> config_mod.RunConfig:
    """Fill task-dependent defaults (a copy; the caller's config is untouched) so the saved config is complete."""
    cfg = cfg.model_copy(deep=True)
    if cfg.train.metric is None:
        cfg.train.metric = task.metric(None).name
    return cfg


def fit_max_length(cfg: config_mod.RunConfig, src, log) -> config_mod.RunConfig:
    """A copy of cfg whose model.max_length fits the model (see models.load.fit_max_length), before config.yaml is written."""
    from tunelab.models import load as model_load

    explicit = "max_length" in cfg.model.model_fields_set
    fitted = model_load.fit_max_length(src, cfg.model.max_length, explicit, cfg.model.name, log)
    if fitted == cfg.model.max_length:
        return cfg
    cfg = cfg.model_copy(deep=True)
    cfg.model.max_length = fitted
    return cfg


def choose_precision(cfg: config_mod.RunConfig) -> tuple[config_mod.RunConfig, hardware.Precision]:
    """Resolve ``train.precision`` for this machine (a copy of cfg holds the result, so config.yaml records it).

    A resumed run keeps the precision it started with, so its continuation is exact.
    """
    requested = cfg.train.precision
    saved = Path(cfg.output_dir) / "config.yaml"
    started = runs.read_config(saved.parent).train.precision if requested == "auto" and saved.is_file() else None
    if started in ("fp32", "bf16"):
        precision = hardware.Precision(started, "the resumed run started with it")
    else:
        precision = hardware.resolve_precision(requested, training_device_type())
    cfg = cfg.model_copy(deep=True)
    cfg.train.precision = precision.name
    return cfg, precision


def training_device_type() -> str:
    """The device type this process trains on, as accelerate sees it (cpu, cuda, mps, xpu, ...)."""
    return distributed.state().device.type


def prepare_run_dir(cfg: config_mod.RunConfig, resume_anyway: bool = False, log=print) -> Path:
    """Create the run folder, or resume one with the same config; never overwrite a finished or foreign folder.

    Every process checks; the main process writes config.yaml.
    """
    run_dir = Path(cfg.output_dir)
    runs.check_writable_dir(run_dir)
    saved = run_dir / "config.yaml"
    if run_dir.exists() and not run_dir.is_dir():
        raise TunelabError(f"{run_dir}: output_dir is a file, not a folder; choose another output_dir")
    if (run_dir / "metrics.json").is_file():
        raise TunelabError(f"{run_dir}: already holds a finished run; choose another output_dir (nothing was changed)")
    if saved.is_file():
        diff = _diff(runs.read_config(run_dir).model_dump(), cfg.model_dump())
        if diff and not resume_anyway:
            raise TunelabError(
                f"{run_dir}: holds an unfinished run with a different config ({'; '.join(diff[:5])}); "
                "rerun with the same config to resume, add --resume-anyway to continue with the new one, or choose another output_dir"
            )
        if diff:
            log(
                f"warning: config changed since the run started ({'; '.join(diff[:5])}); continuing anyway (--resume-anyway)"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise TunelabError(f"{run_dir}: exists and is not a tunelab run folder; refusing to write into it")
    state = distributed.state()
    state.wait_for_everyone()  # every process has checked before anything is written
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(config_mod.dump(cfg), encoding="utf-8")
    state.wait_for_everyone()
    return run_dir


def check_data(run_dir: Path, cfg: config_mod.RunConfig, splits: dict[str, list], resume_anyway: bool, log) -> None:
    """Refuse to resume a checkpoint on changed training data (naming what changed) unless ``resume_anyway``;
    record the fingerprint of what this run starts (or continues) on."""
    current = runs.fingerprint(cfg, splits, {s: _source(cfg, s) for s in splits})
    saved = runs.read_fingerprint(run_dir)
    resuming = checkpoint.latest(run_dir / "checkpoints") is not None
    changes = runs.fingerprint_changes(saved, current) if resuming and saved else []
    if changes and not resume_anyway:
        raise TunelabError(
            f"{run_dir}: cannot resume: {'; '.join(changes)}; rerun with the original data, add --resume-anyway "
            "to continue the checkpoint on the new data, or choose another output_dir"
        )
    if changes:
        log(f"warning: {'; '.join(changes)}; continuing anyway (--resume-anyway)")
    if distributed.is_main_process() and current != saved:
        checkpoint.write_json_atomic(run_dir / runs.FINGERPRINT, current)


def _diff(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def seed_everything(seed: int, threads: int | None) -> None:
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_splits(cfg: config_mod.RunConfig, task: Task, log) -> dict[str, list]:
    """train/dev(/test) rows of a run, as the task reads them (see Task.read_splits)."""
    return task.read_splits(cfg, log)


def _source(cfg: config_mod.RunConfig, split: str) -> str:
    names = {"train": cfg.data.train, "dev": cfg.data.dev or f"{cfg.data.train} (dev split)", "test": cfg.data.test}
    return names.get(split) or split  # an extension's splits are named by the split


def _silent(_msg: str) -> None:
    pass


def export(model, tokenizer, method, labels, run_dir: Path) -> None:
    """Write the method's weights, the tokenizer and the label names into run_dir/model (replaced atomically)."""
    import shutil

    tmp = run_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    method.save(model, tmp)
    tokenizer.save_pretrained(str(tmp))
    final = run_dir / "model"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    if labels is not None:
        (run_dir / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
