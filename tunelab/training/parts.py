"""The loop's own small parts, run after each optimizer step in this order: training log, dev evaluation
(best checkpoint, early stopping), checkpoint saving, progress bar. Each is a ``Callback`` like the ones
recipes pass in, so the loop itself only runs steps and calls hooks.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from tunelab.training import checkpoint, distributed
from tunelab.training.callbacks import Callback, Context
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.tracking import Tracker


def eval_due(ctx: Context) -> bool:
    """Evaluate after this step: every ``eval_every`` steps (else at each epoch end) and after the last step."""
    step, cfg = ctx.state.step, ctx.cfg
    due = step % cfg.eval_every == 0 if cfg.eval_every else step % ctx.steps_per_epoch == 0
    return due or step == ctx.total_steps


class TrainingLog(Callback):
    """Mean loss, learning rate and tokens/s over each ``log_every`` window, sent to the tracker."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self._reset()

    def _reset(self) -> None:
        self.loss, self.items, self.tokens, self.start = 0.0, 0, 0, time.perf_counter()

    def tokens_per_s(self) -> float:
        return self.tokens / max(time.perf_counter() - self.start, 1e-9)

    def mean_loss(self) -> float:
        return self.loss / max(self.items, 1)

    def on_step_end(self, ctx: Context) -> None:
        self.loss += ctx.last.loss_sum
        self.items += ctx.last.items
        self.tokens += ctx.last.tokens
        step = ctx.state.step
        if step % ctx.cfg.log_every == 0 or step == ctx.total_steps:
            record = {
                "step": step,
                "epoch": round(step / ctx.steps_per_epoch, 4),
                "loss": self.mean_loss(),
                "lr": ctx.scheduler.get_last_lr()[0],
                "tokens_per_s": round(self.tokens_per_s(), 1),
            }
            self.tracker.log(record)
            self._reset()


class DevEvaluation(Callback):
    """Dev metrics when due; the best weights go to ``run_dir/best``; early stopping after ``patience`` misses."""

    def __init__(
        self, evaluator: Evaluator, metric: Metric, run_dir: Path, tracker: Tracker, listeners: list[Callback]
    ):
        self.evaluator, self.metric, self.run_dir, self.tracker, self.listeners = (
            evaluator,
            metric,
            run_dir,
            tracker,
            listeners,
        )
        self.autocast: Callable | None = None  # set by the loop: () -> the run's autocast context

    def on_step_end(self, ctx: Context) -> None:
        if eval_due(ctx):
            self.evaluate(ctx)

    def evaluate(self, ctx: Context) -> dict:
        state, acc = ctx.state, ctx.accelerator
        with distributed.full_params(acc, ctx.wrapped):  # sharded engines: every process gathers full weights
            metrics = distributed.evaluate(acc, ctx.model, self.evaluator, self.autocast() if self.autocast else None)
            if self.metric.name not in metrics:
                raise KeyError(
                    f"the evaluator reported no '{self.metric.name}' (it reported {', '.join(sorted(metrics))})"
                )
            improved = self.metric.better(float(metrics[self.metric.name]), state.best_metric)
            if improved and acc.is_main_process:
                checkpoint.save(self.run_dir / "best", state.step, trainable_weights(ctx.model), {"metrics": metrics})
        if improved:
            state.best_metric, state.best_step, state.evals_since_best = float(metrics[self.metric.name]), state.step, 0
        else:
            state.evals_since_best += 1
            patience = ctx.cfg.early_stopping_patience
            if patience and state.evals_since_best >= patience:
                state.stopped_early = True
                ctx.log(
                    f"early stop at step {state.step}: {self.metric.name} has not improved for {state.evals_since_best} evaluations"
                )
        record = {"step": state.step, **{f"dev/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}
        state.history.append(record)
        self.tracker.log(record)
        for cb in self.listeners:
            cb.on_evaluate(ctx, metrics)
        ctx.log(
            f"step {state.step}: dev " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        )
        acc.wait_for_everyone()
        return metrics


class Saver(Callback):
    """A resumable checkpoint at each evaluation, every ``save_every`` steps, after the last step and on a stop request."""

    def __init__(self, save: Callable[[Context], Path]):
        self.save = save
        self.last_saved: Path | None = None
        self.saved_step: int | None = None

    def on_step_end(self, ctx: Context) -> None:
        every = ctx.cfg.save_every
        if eval_due(ctx) or (every and ctx.state.step % every == 0) or ctx.stop_requested:
            self.last_saved, self.saved_step = self.save(ctx), ctx.state.step


class Progress(Callback):
    """The progress bar (stderr; off with quiet and on every process but the main one)."""

    def __init__(self, total: int, initial: int, disabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            disable=disabled,
            file=sys.stderr,
            unit="step",
            dynamic_ncols=True,
            leave=False,
            mininterval=1.0,
        )

    def on_step_end(self, ctx: Context) -> None:
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{ctx.last.loss_sum / max(ctx.last.items, 1):.4f}",
            tok_s=f"{ctx.last.tokens / max(ctx.last.seconds, 1e-9):.0f}",
            refresh=False,
        )

    def write(self, message: str) -> None:
        """A message on its own line, above the bar."""
        if self.bar.disable:
            print(message, file=sys.stderr, flush=True)
        else:
            self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        """Remove the bar; in a redirected log, end its line so the next message starts on its own line."""
        shown = not self.bar.disable and self.bar.n > self.bar.initial
        self.bar.close()
        if shown and not sys.stderr.isatty():
            sys.stderr.write("\n")
            sys.stderr.flush()


WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def plain_name(name: str) -> str:
    """A parameter name without the segments FSDP, activation checkpointing and torch.compile insert."""
    for segment in WRAPPER_SEGMENTS:
        name = name.replace(segment, "")
    return name


def trainable_weights(model) -> dict:
    """The parameters that train, by the names the run folder uses (wrapper segments removed)."""
    return {plain_name(n): p.detach() for n, p in model.named_parameters() if p.requires_grad}
