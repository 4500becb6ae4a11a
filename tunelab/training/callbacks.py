"""The loop's third door: what adjusts between steps.

Subclass ``Callback`` and override only the hooks you need; every hook has a no-op default and gets the
one ``Context`` of the run. A callback that keeps state across steps (running averages, a schedule's
position, a replay memory) returns it from ``state_dict`` and takes it back in ``load_state_dict``: the
loop saves it in every checkpoint and restores it on resume, so resumed runs equal uninterrupted ones.

Order within a step (``ctx.state.step`` is the number of optimizer steps already taken):

    on_step_begin -> forward/backward of every micro-batch -> on_after_backward -> clip, optimizer step,
    scheduler step -> on_before_zero_grad -> zero_grad, state.step += 1 -> on_step_end
    (the loop's own parts then log, evaluate (on_evaluate), save and update the progress bar)

``on_train_begin`` runs once after the optimizer exists and any checkpoint was restored; ``on_train_end``
once after the last step (not after an interrupt or an error). The loop checks that every callback is a
``Callback`` instance; it never probes for attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class LoopState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    sharded: bool = False  # weights were sharded by FSDP/DeepSpeed (the recipe rebuilds a plain model after training)
    best_metric: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


@dataclass
class StepStats:
    """What the last optimizer step did, summed over every process and micro-batch."""

    loss_sum: float = 0.0
    items: int = 0
    tokens: int = 0
    seconds: float = 0.0  # wall time of the step on this process


@dataclass
class Context:
    """What every hook sees.

    Attributes:
        model: the model with the names the run folder uses (unwrapped from DDP/FSDP; change weights here).
        optimizer, scheduler: torch optimizer and LR scheduler.
        state: the LoopState (step count, best metric, early stopping).
        total_steps, steps_per_epoch: the step budget of the run.
        cfg: the TrainConfig.
        accelerator: the accelerate ``Accelerator`` (``is_main_process``, ``process_index``, ``num_processes``,
            ``device``); write files only where ``accelerator.is_main_process``.
        wrapped: the model as the engine wraps it (DDP/FSDP/DeepSpeed); forward passes that train go through it.
        log: one-line messages for the user (only the main process's reach the terminal).
        last: StepStats of the latest step (valid in on_step_end and later).
        stop_requested: set when SIGINT/SIGTERM asked the run to stop after this step.
    """

    model: Any
    optimizer: Any
    scheduler: Any
    state: LoopState
    total_steps: int
    steps_per_epoch: int
    cfg: Any
    accelerator: Any
    log: Callable[[str], None]
    wrapped: Any = None
    last: StepStats = field(default_factory=StepStats)
    stop_requested: bool = False


class Callback:
    """Base class of everything the loop calls between steps; every hook is a no-op until overridden.

    Set ``acts_on_gradients = True`` in a subclass whose hooks read or change gradients: under FSDP and
    DeepSpeed gradients are sharded over processes, and the loop refuses such callbacks there.
    """

    acts_on_gradients: bool = False

    def on_train_begin(self, ctx: Context) -> None:
        """Once, after the optimizer exists and a checkpoint (if any) was restored."""

    def on_step_begin(self, ctx: Context) -> None:
        """Before the forward passes of optimizer step ``ctx.state.step + 1``."""

    def on_after_backward(self, ctx: Context) -> None:
        """Gradients of the whole optimizer batch are ready (synchronised across processes); before clipping."""

    def on_before_zero_grad(self, ctx: Context) -> None:
        """After the optimizer and scheduler stepped, gradients still present; ``state.step`` not yet incremented."""

    def on_step_end(self, ctx: Context) -> None:
        """After ``state.step`` was incremented; ``ctx.last`` holds the step's loss sum, items and tokens."""

    def on_evaluate(self, ctx: Context, metrics: dict) -> None:
        """After a dev evaluation (every process gets the same metrics)."""

    def on_train_end(self, ctx: Context) -> None:
        """After the last step of a run that was not interrupted."""

    def state_dict(self) -> dict:
        """State to save in checkpoints (default: none). Tensors are fine; keep it picklable."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (called before ``on_train_begin`` on resume)."""


def check(callbacks) -> list[Callback]:
    """The callbacks as a list, each checked to be a Callback (a TypeError names one that is not)."""
    out = list(callbacks)
    for cb in out:
        if not isinstance(cb, Callback):
            raise TypeError(f"{type(cb).__name__} is not a tunelab.training.callbacks.Callback; subclass it")
    return out
