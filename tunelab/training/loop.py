"""THE training loop: every recipe hands it a model, encoded examples and an objective.

It owns batching order, gradient accumulation, bf16 autocast, clipping, the schedule,
evaluation, early stopping, best/last checkpoints and exact resume. It knows nothing
about tasks or methods: those arrive as functions (``Objective``) and callbacks.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from tunelab import hardware
from tunelab.data.collate import batch_plan, micro_batches
from tunelab.training import checkpoint, optim


@dataclass
class Objective:
    """What a task gives the loop.

    loss(model, batch) -> (sum of per-item losses, item count); the loop divides by the
    item count of the whole optimizer batch, so accumulation equals the large-batch loss.
    count(batch) -> items the loss is summed over (examples, or target tokens).
    evaluate(model) -> dev metrics, e.g. {"accuracy": 0.9, "loss": 0.3}.
    """

    loss: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, Any]]
    count: Callable[[dict], int]
    evaluate: Callable[[torch.nn.Module], dict[str, float]]


@dataclass
class LoopState:
    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


class Callback:
    """Hooks a recipe can pass to the loop; each gets the model and the loop state."""

    def on_step_begin(self, model, state: LoopState, total_steps: int) -> None: ...
    def on_after_backward(self, model, state: LoopState, total_steps: int) -> None:
        """Gradients of the whole batch are ready; before clipping and the optimizer step."""

    def on_before_zero_grad(self, model, state: LoopState, total_steps: int) -> None:
        """After the optimizer step, gradients still present (``state.step`` not yet incremented)."""

    def on_evaluate(self, model, state: LoopState, metrics: dict) -> None: ...


def lower_is_better(metric: str) -> bool:
    return "loss" in metric or "perplexity" in metric


def train(
    model,
    features: list[dict],
    objective: Objective,
    cfg,
    run_dir: Path,
    *,
    collate: Callable[[list[dict]], dict],
    callbacks: tuple[Callback, ...] = (),
    quiet: bool = False,
    log: Callable[[str], None] = print,
    param_groups: Callable[[torch.nn.Module, float, float], list[dict]] = optim.param_groups,
) -> LoopState:
    """Train ``model`` in place on ``features`` following ``cfg`` (a TrainConfig); resume from run_dir if it holds a checkpoint.

    ``param_groups(model, lr, weight_decay)`` builds the optimizer groups (a method's own, or layer-wise decayed).
    Returns the final LoopState; the best weights are in ``run_dir/checkpoints/best`` (see ``load_best``).
    """
    from accelerate import Accelerator

    accelerator = Accelerator()  # device placement now; DDP/FSDP through `accelerate launch` later
    model = model.to(accelerator.device)
    lengths = [len(f["input_ids"]) for f in features]
    steps_per_epoch = math.ceil(len(features) / cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    optimizer = optim.adamw(param_groups(model, cfg.lr, cfg.weight_decay), cfg.lr)
    sched = optim.scheduler(optimizer, cfg.schedule, int(cfg.warmup_fraction * total), total)
    state = LoopState()
    ckpt_root = Path(run_dir) / "checkpoints"
    if (last := checkpoint.latest(ckpt_root)) is not None:
        state = _restore(model, optimizer, sched, last)
        log(f"resumed from {last} (step {state.step} of {total})")
    _truncate_log(Path(run_dir) / "metrics.jsonl", state.step)
    if cfg.precision == "auto":  # recipes resolve it (and record why); a direct caller gets the same choice
        cfg = cfg.model_copy(update={"precision": hardware.resolve_precision("auto", accelerator.device.type).name})
    autocast = hardware.autocast(accelerator.device.type, cfg.precision)
    trainable = [p for p in model.parameters() if p.requires_grad]
    bar = _progress(total, state.step, quiet)
    window = {"loss": 0.0, "items": 0, "tokens": 0, "start": time.perf_counter()}
    while state.step < total and not state.stopped_early:
        epoch = state.step // steps_per_epoch
        plan = batch_plan(lengths, cfg.batch_size, cfg.seed, epoch, cfg.length_grouping)
        for indices in plan[state.step % steps_per_epoch :]:
            for cb in callbacks:
                cb.on_step_begin(model, state, total)
            loss, items = _step(
                model,
                [features[i] for i in indices],
                objective,
                collate,
                cfg,
                autocast,
                accelerator,
                trainable,
                lambda: _hook(callbacks, "on_after_backward", model, state, total),
            )
            optimizer.step()
            sched.step()
            _hook(callbacks, "on_before_zero_grad", model, state, total)
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            window["loss"] += loss
            window["items"] += items
            window["tokens"] += sum(lengths[i] for i in indices)
            _after_step(
                model,
                objective,
                cfg,
                state,
                window,
                optimizer,
                sched,
                run_dir,
                total,
                steps_per_epoch,
                callbacks,
                bar,
                log,
            )
            if state.step >= total or state.stopped_early:
                break
    bar.close()
    return state


def _step(
    model, examples, objective, collate, cfg, autocast, accelerator, trainable, after_backward
) -> tuple[float, int]:
    """One optimizer batch: forward/backward over micro-batches, normalised by the batch's item count."""
    model.train()
    batches = [
        collate(examples[s : s + len(m)])
        for s, m in _offsets(micro_batches(list(range(len(examples))), cfg.grad_accum))
    ]
    total_items = sum(int(objective.count(b)) for b in batches)
    loss_sum = 0.0
    for batch in batches:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with autocast:
            loss, _ = objective.loss(model, batch)
        accelerator.backward(loss / max(total_items, 1))
        loss_sum += float(loss.detach())
    after_backward()
    if cfg.max_grad_norm:
        accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
    return loss_sum, total_items


def _hook(callbacks, name: str, *args) -> None:
    """Call an optional hook on each callback (duck-typed callbacks may define only some hooks)."""
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if fn is not None:
            fn(*args)


def _offsets(parts: list[list[int]]):
    start = 0
    for part in parts:
        yield start, part
        start += len(part)


def _after_step(
    model, objective, cfg, state, window, optimizer, sched, run_dir, total, steps_per_epoch, callbacks, bar, log
):
    """Logging, evaluation, early stopping and checkpointing after optimizer step ``state.step``."""
    run_dir = Path(run_dir)
    elapsed = max(time.perf_counter() - window["start"], 1e-9)
    tokens_per_s = window["tokens"] / elapsed
    bar.update(1)
    bar.set_postfix(loss=f"{window['loss'] / max(window['items'], 1):.4f}", tok_s=f"{tokens_per_s:.0f}")
    if state.step % cfg.log_every == 0 or state.step == total:
        record = {
            "step": state.step,
            "epoch": round(state.step / steps_per_epoch, 4),
            "loss": window["loss"] / max(window["items"], 1),
            "lr": sched.get_last_lr()[0],
            "tokens_per_s": round(tokens_per_s, 1),
        }
        _append_log(run_dir / "metrics.jsonl", record)
        window.update(loss=0.0, items=0, tokens=0, start=time.perf_counter())
    at_epoch_end = state.step % steps_per_epoch == 0
    due = state.step % cfg.eval_every == 0 if cfg.eval_every else at_epoch_end
    if due or state.step == total:
        _evaluate(model, objective, cfg, state, run_dir, callbacks, log)
    if due or state.step == total or (cfg.save_every and state.step % cfg.save_every == 0):
        _save(model, optimizer, sched, state, run_dir / "checkpoints")


def _evaluate(model, objective, cfg, state, run_dir: Path, callbacks, log) -> None:
    model.eval()
    device_type = next(model.parameters()).device.type
    with torch.no_grad(), hardware.autocast(device_type, cfg.precision):
        metrics = objective.evaluate(model)
    if cfg.metric not in metrics:
        from tunelab.errors import ConfigError

        raise ConfigError(
            f"train.metric: '{cfg.metric}' is not a dev metric of this task; available: {', '.join(sorted(metrics))}"
        )
    value = float(metrics[cfg.metric])
    better = state.best_metric is None or (
        value < state.best_metric if lower_is_better(cfg.metric) else value > state.best_metric
    )
    if better:
        state.best_metric, state.best_step, state.evals_since_best = value, state.step, 0
        checkpoint.save(run_dir / "best", state.step, _trainable(model), {"metrics": metrics})
    else:
        state.evals_since_best += 1
        if cfg.early_stopping_patience and state.evals_since_best >= cfg.early_stopping_patience:
            state.stopped_early = True
            log(
                f"early stop at step {state.step}: {cfg.metric} has not improved for {state.evals_since_best} evaluations"
            )
    record = {"step": state.step, **{f"dev/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}
    state.history.append(record)
    _append_log(run_dir / "metrics.jsonl", record)
    for cb in callbacks:
        cb.on_evaluate(model, state, metrics)
    log(f"step {state.step}: dev " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float)))


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def _save(model, optimizer, sched, state: LoopState, ckpt_root: Path) -> None:
    extra = {
        "optimizer": optimizer.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": checkpoint.rng_state(),
        "loop": asdict(state),
    }
    checkpoint.save(ckpt_root, state.step, _trainable(model), extra)


def _restore(model, optimizer, sched, path: Path) -> LoopState:
    weights, extra = checkpoint.load(path)
    load_weights(model, weights)
    optimizer.load_state_dict(extra["optimizer"])
    sched.load_state_dict(extra["scheduler"])
    checkpoint.set_rng_state(extra["rng"])
    return LoopState(**extra["loop"])


def load_weights(model, weights: dict[str, torch.Tensor]) -> None:
    """Copy saved trainable tensors into the model's parameters of the same names."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)


def load_best(model, run_dir: Path) -> dict | None:
    """Load the best checkpoint's weights into ``model``; returns its dev metrics (None if never evaluated)."""
    best = checkpoint.latest(Path(run_dir) / "best")
    if best is None:
        return None
    weights, extra = checkpoint.load(best)
    load_weights(model, weights)
    return extra["metrics"]


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the resumed step (written by a run killed after its last checkpoint)."""
    if not path.is_file():
        return
    lines = [
        ln
        for ln in path.read_text(encoding="utf-8").splitlines()
        if ln.strip() and json.loads(ln).get("step", 0) <= step
    ]
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")


def _progress(total: int, initial: int, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=quiet,
        file=sys.stderr,
        unit="step",
        dynamic_ncols=True,
        leave=False,
        mininterval=1.0,
    )
