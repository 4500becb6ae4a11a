"""THE training loop: every recipe hands it a ``Job``; it never learns a task's, method's or recipe's name.

Three doors open it up without editing it:
  * ``Objective`` (training/objective.py): forward outputs, then a pure loss from them;
  * ``Sampler`` (training/sampler.py): which examples form each optimizer batch (length-grouped by default);
  * ``Callback`` (training/callbacks.py): hooks with no-op defaults, one ``Context``, and their own state in
    every checkpoint.
The loop owns the rest: splitting each batch over processes and micro-batches (the loss is divided by the
global item count, so accumulation and N processes equal one large batch), autocast from the accelerator's
device, clipping, the schedule, Ctrl-C handling, and exact resume (weights, optimizer, scheduler, every
process's RNG, sampler and callback state). Logging, evaluation/best/early stopping, saving and the progress
bar are the small parts in training/parts.py. Only the main process writes files.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tunelab import hardware
from tunelab.training import checkpoint, distributed, optim
from tunelab.training.callbacks import Callback, Context, LoopState, StepStats, check
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.interrupt import Interrupted, StopSignals
from tunelab.training.objective import Objective
from tunelab.training.parts import DevEvaluation, Progress, Saver, TrainingLog, plain_name, trainable_weights
from tunelab.training.sampler import LengthGrouped, Sampler
from tunelab.training.tracking import JsonlTracker, Tracker

__all__ = ["Job", "LoopState", "Objective", "Callback", "train", "load_best", "load_weights"]


@dataclass
class Job:
    """Everything one training run needs.

    Attributes:
        model: the model with the method applied (trainable parameters set); trained in place.
        features: encoded training examples (dicts; ``input_ids`` lengths feed the default sampler).
        objective: forward, pure loss, item count (see Objective).
        collate: features -> batch dict (tensors; other values pass through to the objective).
        cfg: the ``train:`` section (TrainConfig).
        run_dir: the run folder (checkpoints/, best/, metrics.jsonl).
        evaluator, metric: dev evaluation and the metric (with its direction) that picks the best
            checkpoint and drives early stopping; None = no evaluation.
        sampler: default LengthGrouped over ``len(input_ids)`` with cfg.batch_size/seed/length_grouping.
        callbacks: Callback instances, called in order before the loop's own parts.
        param_groups: ``(model, lr, weight_decay) -> optimizer groups``.
        tracker: where records go (default: metrics.jsonl); only the main process uses it.
        log: one-line messages; quiet: no progress bar.
    """

    model: Any
    features: Sequence[dict]
    objective: Objective
    collate: Callable[[list[dict]], dict]
    cfg: Any
    run_dir: Path
    evaluator: Evaluator | None = None
    metric: Metric | None = None
    sampler: Sampler | None = None
    callbacks: Sequence[Callback] = ()
    param_groups: Callable = optim.param_groups
    tracker: Tracker | None = None
    log: Callable[[str], None] = print
    quiet: bool = False


def train(job: Job) -> LoopState:
    """Train ``job.model`` in place; resume from ``job.run_dir`` if it holds a checkpoint.

    Returns the final LoopState; the best weights are in ``run_dir/best`` (see ``load_best``). Raises
    ``Interrupted`` after saving a checkpoint when SIGINT/SIGTERM arrived during training.
    """
    run = _Run(job, distributed.accelerator())
    try:
        with StopSignals(notify=run.progress.write if run.acc.is_main_process else None) as signals:
            run.signals = signals
            run.loop()
    except (Interrupted, KeyboardInterrupt):
        run.tracker.finish("interrupted")
        raise
    except Exception:
        run.tracker.finish("failed")
        raise
    finally:
        run.progress.close()
    return run.ctx.state


class _Run:
    """One call of ``train``: the prepared model, optimizer, parts and the step function."""

    def __init__(self, job: Job, acc):
        self.job, self.acc, cfg = job, acc, job.cfg
        self.run_dir = Path(job.run_dir)
        self.signals: StopSignals | None = None
        self.sampler = job.sampler or LengthGrouped(
            [len(f["input_ids"]) for f in job.features], cfg.batch_size, cfg.seed, cfg.length_grouping
        )
        steps = self.sampler.steps_per_epoch()
        total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps))
        self.callbacks = check(job.callbacks)
        distributed.check_engine(acc, cfg, [type(cb).__name__ for cb in self.callbacks if cb.acts_on_gradients])
        optimizer = optim.adamw(job.param_groups(job.model, cfg.lr, cfg.weight_decay), cfg.lr)
        scheduler = optim.scheduler(optimizer, cfg.schedule, int(cfg.warmup_fraction * total), total)
        self.wrapped, prepared_optimizer = acc.prepare(job.model, optimizer)
        model = acc.unwrap_model(self.wrapped)
        if cfg.precision == "auto":  # recipes resolve it (and record why); a direct caller gets the same choice
            cfg = cfg.model_copy(update={"precision": hardware.resolve_precision("auto", acc.device.type).name})
        self.precision = cfg.precision
        self.ctx = Context(
            model,
            prepared_optimizer,
            scheduler,
            LoopState(),
            total,
            steps,
            cfg,
            acc,
            job.log if acc.is_main_process else _silent,
            wrapped=self.wrapped,
        )
        if (last := checkpoint.latest(self.run_dir / "checkpoints")) is not None:
            self._restore(last)
            self.ctx.log(f"resumed from {last} (step {self.ctx.state.step} of {total})")
        self.ctx.state.sharded = distributed.sharded(acc) is not None
        self.tracker = (job.tracker or JsonlTracker()) if acc.is_main_process else Tracker()
        self.tracker.start(self.run_dir, self.ctx.state.step)
        self.parts = self._parts()

    def _parts(self) -> list[Callback]:
        job = self.job
        parts: list[Callback] = [TrainingLog(self.tracker)]
        if job.evaluator is not None and job.metric is not None:
            evaluation = DevEvaluation(job.evaluator, job.metric, self.run_dir, self.tracker, self.callbacks)
            evaluation.autocast = self.autocast
            parts.append(evaluation)
        self.progress = Progress(self.ctx.total_steps, self.ctx.state.step, job.quiet or not self.acc.is_main_process)
        return parts + [Saver(self._save), self.progress]

    def autocast(self):
        """The autocast context for the accelerator's device type and the run's precision."""
        return hardware.autocast(self.acc.device.type, self.precision)

    # ------------------------------------------------------------ the loop

    def loop(self) -> None:
        ctx, state = self.ctx, self.ctx.state
        for cb in self.callbacks:
            cb.on_train_begin(ctx)
        while state.step < ctx.total_steps and not state.stopped_early:
            plan = self.sampler.batches(state.step // ctx.steps_per_epoch)
            if len(plan) != ctx.steps_per_epoch:
                raise ValueError(f"sampler planned {len(plan)} batches for an epoch of {ctx.steps_per_epoch} steps")
            for indices in plan[state.step % ctx.steps_per_epoch :]:
                self.step(indices)
                if ctx.stop_requested:
                    signum = self.signals.requested if self.signals and self.signals.requested else signal.SIGINT
                    raise Interrupted(signum, state.step, checkpoint.latest(self.run_dir / "checkpoints"))
                if state.step >= ctx.total_steps or state.stopped_early:
                    break
        for cb in self.callbacks:
            cb.on_train_end(ctx)
        self.tracker.finish("stopped_early" if state.stopped_early else "finished")

    def step(self, indices: list[int]) -> None:
        """One optimizer step on the batch ``indices``, then every callback's and part's on_step_end."""
        ctx, acc, job = self.ctx, self.acc, self.job
        start = time.perf_counter()
        for cb in self.callbacks:
            cb.on_step_begin(ctx)
        self.wrapped.train()
        parts = distributed.local_share(indices, ctx.cfg.grad_accum, acc.process_index, acc.num_processes)
        batches = [(self._to_device(job.collate([job.features[i] for i in idx])), real) for idx, real in parts]
        (items,) = distributed.global_sums(acc, [sum(job.objective.count(b) for b, real in batches if real)])
        scale = acc.num_processes / max(items, 1)  # DDP averages gradients over processes; undo that
        loss_sum = 0.0
        for k, (batch, real) in enumerate(batches):
            with contextlib.nullcontext() if k == len(batches) - 1 else acc.no_sync(self.wrapped):
                with self.autocast():
                    loss, _ = job.objective.loss(job.objective.forward(self.wrapped, batch), batch)
                acc.backward(loss * (scale if real else 0.0))
            loss_sum += float(loss.detach()) if real else 0.0
        self._optimizer_step()
        tokens = sum(len(job.features[i]["input_ids"]) for idx, real in parts if real for i in idx)
        requested = self.signals.requested if self.signals else None
        totals = distributed.global_sums(acc, [loss_sum, tokens, float(requested is not None)])
        ctx.last = StepStats(totals[0], int(items), int(totals[1]), time.perf_counter() - start)
        ctx.stop_requested = totals[2] > 0
        for cb in self.callbacks + self.parts:
            cb.on_step_end(ctx)

    def _optimizer_step(self) -> None:
        ctx = self.ctx
        for cb in self.callbacks:
            cb.on_after_backward(ctx)
        if ctx.cfg.max_grad_norm:
            self.acc.clip_grad_norm_(self.wrapped.parameters(), ctx.cfg.max_grad_norm)
        ctx.optimizer.step()
        ctx.scheduler.step()
        for cb in self.callbacks:
            cb.on_before_zero_grad(ctx)
        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.state.step += 1

    def _to_device(self, batch: dict) -> dict:
        import torch

        device = self.acc.device
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # ------------------------------------------------------------ checkpoints

    def _save(self, ctx: Context) -> Path | None:
        """A resumable checkpoint of this step (written by the main process; every process takes part)."""
        acc = self.acc
        rng = distributed.gather_rng(acc)
        optimizer_state = distributed.optimizer_state(acc, self.wrapped, ctx.optimizer)
        path = None
        with distributed.full_params(acc, self.wrapped):  # sharded engines: every process gathers full weights
            if acc.is_main_process:
                extra = {
                    "optimizer": optimizer_state,
                    "scheduler": ctx.scheduler.state_dict(),
                    "rng": rng,
                    "loop": asdict(ctx.state),
                    "sampler": self.sampler.state_dict(),
                    "callbacks": dict(zip(_keys(self.callbacks), (cb.state_dict() for cb in self.callbacks))),
                    "processes": acc.num_processes,
                }
                keep = None if ctx.cfg.keep_checkpoints == "all" else 1
                path = checkpoint.save(
                    self.run_dir / "checkpoints", ctx.state.step, trainable_weights(ctx.model), extra, keep
                )
        acc.wait_for_everyone()
        return path

    def _restore(self, path: Path) -> None:
        ctx, acc = self.ctx, self.acc
        weights, extra = checkpoint.load(path)
        with distributed.full_params(acc, self.wrapped, writeback=True):
            load_weights(ctx.model, weights)
        if extra["optimizer"] is not None:
            distributed.load_optimizer_state(acc, self.wrapped, ctx.optimizer, extra["optimizer"])
        else:
            ctx.log("warning: this checkpoint holds no optimizer state (DeepSpeed): the optimizer moments restart")
        ctx.scheduler.load_state_dict(extra["scheduler"])
        note = distributed.restore_rng(self.acc, extra["rng"])
        if note:
            ctx.log(note)
        self.sampler.load_state_dict(extra.get("sampler", {}))
        saved = dict(extra.get("callbacks", {}))
        for key, cb in zip(_keys(self.callbacks), self.callbacks):
            if key in saved:
                cb.load_state_dict(saved.pop(key))
        for key, value in saved.items():
            if value:
                ctx.log(f"warning: the checkpoint holds state of callback {key}, which this run does not have")
        ctx.state = LoopState(**extra["loop"])


def _keys(callbacks: list[Callback]) -> list[str]:
    """Checkpoint keys of the callbacks: the class name, numbered from the second instance of a class on
    (so adding or removing other callbacks does not move a callback's state)."""
    seen: dict[str, int] = {}
    keys = []
    for cb in callbacks:
        name = type(cb).__qualname__
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def _silent(_msg: str) -> None:
    pass


def load_weights(model, weights: dict) -> None:
    """Copy saved trainable tensors into the model's parameters of the same names."""
    import torch

    params = {plain_name(n): p for n, p in model.named_parameters()}
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise KeyError(f"checkpoint holds tensors this model does not have: {unknown[:3]}")
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
