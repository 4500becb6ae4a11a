"""`tunelab train`: config -> data -> model -> method -> encode -> loop -> best weights -> run folder + report."""

from __future__ import annotations

import json
import math
import random
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from tunelab import config as config_mod
from tunelab import hardware, runs
from tunelab.data import cache
from tunelab.data.collate import pad_batch
from tunelab.data.split import stratified_split
from tunelab.errors import TunelabError
from tunelab.evaluation import report
from tunelab.methods import METHODS
from tunelab.methods.base import count_parameters
from tunelab.models import load as model_load
from tunelab.tasks import TASKS
from tunelab.training import checkpoint, loop, optim, speed


def run(cfg: config_mod.RunConfig, *, quiet: bool = False, log=print, callbacks=()) -> dict:
    """Train per ``cfg`` into ``cfg.output_dir`` (resuming if interrupted); returns the final metrics."""
    task = TASKS[cfg.task]
    cfg = resolve(cfg, task)
    model_load.resolve(
        cfg.model.name, cfg.model.gguf_file, cfg.model.revision
    )  # a bad model name fails before any work
    cfg, precision = choose_precision(cfg)
    run_dir = prepare_run_dir(cfg)
    log(hardware.slow_bf16_warning(precision) or f"precision: {precision.name} ({precision.reason})")
    seed_everything(cfg.train.seed, cfg.train.threads)
    splits = read_splits(cfg, task, log)
    labels = task.label_space(splits["train"], cfg.data.train)
    tokenizer, model, head = runs.build_base(cfg, labels)
    method = METHODS[cfg.method.name]
    model = method.apply(model, cfg.method, head)
    trainable, total = count_parameters(model)
    log(f"{cfg.method.name}: training {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")
    feats, collate, evaluate, evaluate_final, evaluate_test, data_info = _pipeline(
        cfg, task, tokenizer, labels, splits, log
    )
    baseline = {"baseline": evaluate_final(model)} if getattr(task, "EVAL_BEFORE_TRAINING", False) else {}
    loss_fn = task.loss_for(cfg) if hasattr(task, "loss_for") else task.loss
    objective = loop.Objective(loss=loss_fn, count=task.count, evaluate=evaluate)
    start = time.perf_counter()
    callbacks = [*callbacks, *training_callbacks(model, cfg, method, len(feats["train"]), log)]
    groups = optim.groups_builder(getattr(method, "param_groups", None), cfg.method, cfg.train.llrd)
    with speed.applied(model, cfg.speed, cfg.train.precision, trainable == total, log):
        state = loop.train(
            model,
            feats["train"],
            objective,
            cfg.train,
            run_dir,
            collate=collate,
            callbacks=callbacks,
            quiet=quiet,
            log=log,
            param_groups=groups,
        )
    loop.load_best(model, run_dir)
    final = {
        "best_step": state.best_step,
        "steps": state.step,
        "train_seconds": round(time.perf_counter() - start, 1),
        "trainable_parameters": trainable,
        "total_parameters": total,
        **baseline,
        "precision": {"name": precision.name, "reason": precision.reason},
        "dev": evaluate_final(model),
        **({"test": evaluate_test(model)} if "test" in feats else {}),
        **({"data": data_info} if data_info else {}),
    }
    export(model, tokenizer, method, labels, run_dir)
    checkpoint.write_json_atomic(run_dir / "metrics.json", final)
    report.write(run_dir, cfg, final, labels)
    return final


def _pipeline(cfg, task, tokenizer, labels, splits, log):
    """(features per split, collate, dev evaluate during training, final dev evaluate, test evaluate, data info).

    A task with ``prepare`` builds its own (e.g. a cheap loss-only evaluation in the loop, generations at the end).
    """
    if hasattr(task, "prepare"):
        p = task.prepare(cfg, tokenizer, splits, log)
        return p.features, p.collate, p.evaluate, p.evaluate_final, p.evaluate_test, p.info
    options = task.encode_options(cfg.data)
    encode = partial(task.encode, tokenizer=tokenizer, labels=labels, max_length=cfg.model.max_length, **options)
    feats = {
        name: cache.cached(
            cache.key(rows, tokenizer, task=cfg.task, labels=labels, max_length=cfg.model.max_length, **options),
            partial(encode, rows, source=_source(cfg, name)),
            cfg.speed.cache,
            log,
        )
        for name, rows in splits.items()
    }
    collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
    evaluate = partial(task.evaluate, features=feats["dev"], labels=labels, collate=collate)
    evaluate_test = partial(task.evaluate, features=feats.get("test"), labels=labels, collate=collate)
    return feats, collate, evaluate, evaluate, evaluate_test, None


def training_callbacks(model, cfg: config_mod.RunConfig, method, n_train: int, log) -> list:
    """Callbacks a method asks for (e.g. AdaLoRA's rank schedule) plus gradual unfreezing when configured."""
    out = list(method.callbacks(model, cfg.method)) if hasattr(method, "callbacks") else []
    every = cfg.train.gradual_unfreeze_every
    if every is not None:
        from tunelab.training.unfreeze import GradualUnfreeze

        steps = math.ceil(n_train / cfg.train.batch_size) if every == "epoch" else every
        out.append(GradualUnfreeze(steps, log))
    return out


def resolve(cfg: config_mod.RunConfig, task) -> config_mod.RunConfig:
    """Fill task-dependent defaults (a copy; the caller's config is untouched) so the saved config is complete."""
    cfg = cfg.model_copy(deep=True)
    if cfg.train.metric is None:
        cfg.train.metric = task.DEFAULT_METRIC
    return cfg


def choose_precision(cfg: config_mod.RunConfig) -> tuple[config_mod.RunConfig, hardware.Precision]:
    """Resolve ``train.precision`` for this machine (a copy of cfg holds the result, so config.yaml records it).

    A resumed run keeps the precision it started with, so its continuation is exact.
    """
    requested = cfg.train.precision
    saved = Path(cfg.output_dir) / "config.yaml"
    started = config_mod.load(saved).train.precision if requested == "auto" and saved.is_file() else None
    if started in ("fp32", "bf16"):
        precision = hardware.Precision(started, "the resumed run started with it")
    else:
        precision = hardware.resolve_precision(requested, training_device_type())
    cfg = cfg.model_copy(deep=True)
    cfg.train.precision = precision.name
    return cfg, precision


def training_device_type() -> str:
    """The device type this process trains on, as accelerate sees it (cpu, cuda, mps, xpu, ...)."""
    from accelerate import PartialState

    return PartialState().device.type


def prepare_run_dir(cfg: config_mod.RunConfig) -> Path:
    """Create the run folder, or resume one with the same config; never overwrite a finished or foreign folder."""
    run_dir = Path(cfg.output_dir)
    saved = run_dir / "config.yaml"
    if (run_dir / "metrics.json").is_file():
        raise TunelabError(f"{run_dir}: already holds a finished run; choose another output_dir (nothing was changed)")
    if saved.is_file():
        old = config_mod.load(saved).model_dump()
        diff = _diff(old, cfg.model_dump())
        if diff:
            raise TunelabError(
                f"{run_dir}: holds an unfinished run with a different config ({'; '.join(diff[:5])}); "
                "rerun with the same config to resume, or choose another output_dir"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise TunelabError(f"{run_dir}: exists and is not a tunelab run folder; refusing to write into it")
    run_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(config_mod.dump(cfg), encoding="utf-8")
    return run_dir


def _diff(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in _diff(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def seed_everything(seed: int, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_splits(cfg: config_mod.RunConfig, task, log) -> dict[str, list]:
    """train/dev(/test) rows; dev is carved out of train (stratified, seeded) when no dev file is given."""
    data = cfg.data
    train = _read(task, data, data.train, log)
    if data.max_train_rows:
        train = train[: data.max_train_rows]
    if data.dev:
        dev = _read(task, data, data.dev, log)
    else:
        train_idx, dev_idx = stratified_split(
            [getattr(r, "label", None) for r in train], data.dev_fraction, cfg.train.seed
        )
        train, dev = [train[i] for i in train_idx], [train[i] for i in dev_idx]
        log(
            f"no dev file: held out {len(dev)} of {len(train) + len(dev)} training rows (stratified, seed {cfg.train.seed})"
        )
    if data.max_dev_rows:
        dev = dev[: data.max_dev_rows]
    splits = {"train": train, "dev": dev}
    if data.test:
        splits["test"] = _read(task, data, data.test, log)
    return splits


def _read(task, data_cfg, path: str, log) -> list:
    table = task.read(data_cfg, path)
    if table.skipped:
        lines = ", ".join(str(line) for line, _ in table.skipped[:10])
        log(
            f"{path}: skipped {len(table.skipped)} bad rows (lines {lines}{', ...' if len(table.skipped) > 10 else ''})"
        )
    return table.rows


def _source(cfg: config_mod.RunConfig, split: str) -> str:
    return {"train": cfg.data.train, "dev": cfg.data.dev or f"{cfg.data.train} (dev split)", "test": cfg.data.test}[
        split
    ] or split


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
