"""The loop's first door: what is minimised.

An ``Objective`` is three plain functions. The loop runs ``forward`` once per micro-batch under autocast,
then hands the outputs to ``loss``, which must not run the model again: a distillation objective puts the
teacher's outputs next to the student's in ``forward`` (teacher under ``torch.no_grad``) and combines them in
``loss``; an EWC or multi-task objective adds its terms in ``loss``. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Objective:
    """What the loop minimises.

    Attributes:
        forward: ``forward(model, batch) -> outputs``; runs the model (the only place that does). ``batch``
            holds tensors already on the model's device, plus any non-tensor values collate put there.
        loss: ``loss(outputs, batch) -> (loss_sum, item_count)``; pure. ``loss_sum`` is the *sum* of per-item
            losses as a 0-dim float tensor (float32 preferred); the loop divides by the item count of the whole
            optimizer batch across every process, so gradient accumulation and N processes equal one large batch.
        count: ``count(batch) -> int``; the items ``loss`` will sum over (examples, labelled tokens, target
            tokens), computed without the model so the loop knows the global count before any backward.
    """

    forward: Callable[[Any, dict], Any]
    loss: Callable[[Any, dict], tuple[Any, int]]
    count: Callable[[dict], int]
