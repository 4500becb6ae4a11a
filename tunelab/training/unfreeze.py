"""Gradual unfreezing (Howard & Ruder, 2018, ULMFiT) as a loop Callback, usable with any method.

Layer groups from the top: head (and anything above the layer stack), layer L, ..., layer 1,
embeddings. Training starts with the top group; one more group joins every ``every`` steps.
The optimizer holds every trainable parameter from the start; a still-frozen group only has
its gradients dropped before clipping and the step, so checkpoints, resume (the schedule
depends only on the step) and saving are unaffected.
"""

from __future__ import annotations

from tunelab.training.callbacks import Callback, Context


def unfrozen_groups(step: int, every: int) -> int:
    """How many layer groups (from the top) train at 0-based optimizer step ``step``."""
    return 1 + step // every


class GradualUnfreeze(Callback):
    acts_on_gradients = True  # drops the gradients of still-frozen layer groups

    def __init__(self, every: int):
        self.every = every
        self._depths: dict[str, int] | None = None
        self._shown = 0

    def on_after_backward(self, ctx: Context) -> None:
        from tunelab.training.optim import layer_depths

        model = ctx.model
        if self._depths is None:
            self._depths, self._top = layer_depths(model)
        k = unfrozen_groups(ctx.state.step, self.every)
        lowest = self._top + 2 - k  # groups with depth >= lowest train
        if k != self._shown and lowest >= 0:
            ctx.log(
                f"gradual unfreeze: step {ctx.state.step + 1}: training the top {k} layer groups (depth >= {max(lowest, 0)})"
            )
        self._shown = k
        if lowest <= 0:
            return
        for name, p in model.named_parameters():
            if p.grad is not None and self._depths[name] < lowest:
                p.grad = None  # AdamW skips parameters without gradients: no update, no weight decay
