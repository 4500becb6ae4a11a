"""Pure batching helpers: length-grouped batch plans and dynamic padding (never pad to max_length)."""

from __future__ import annotations

import random

import torch


def batch_plan(
    lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool = True
) -> list[list[int]]:
    """Indices of each batch for one epoch; the same (seed, epoch) always gives the same plan.

    With grouping, examples are shuffled, cut into chunks of 50 batches, sorted by length
    inside each chunk (so a batch pads little), and the batches are shuffled again.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        chunk = batch_size * 50
        order = [
            i for s in range(0, len(order), chunk) for i in sorted(order[s : s + chunk], key=lambda i: -lengths[i])
        ]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def pad_batch(features: list[dict], pad_id: int, label_pad: int = -100) -> dict[str, torch.Tensor]:
    """Stack features into tensors, right-padding sequence fields to the longest in the batch.

    ``input_ids`` pad with ``pad_id``, ``labels`` lists with ``label_pad``, everything else
    (attention_mask, token_type_ids, position_ids) with 0; scalar fields are stacked as-is.
    Keys starting with "_" are a task's per-example bookkeeping and are left out.
    """
    out: dict[str, torch.Tensor] = {}
    width = max(len(f["input_ids"]) for f in features)
    for key in features[0]:
        if key.startswith("_"):
            continue
        values = [f[key] for f in features]
        if not isinstance(values[0], (list, tuple)):
            out[key] = torch.tensor(values)
            continue
        fill = pad_id if key == "input_ids" else label_pad if key == "labels" else 0
        out[key] = torch.tensor([list(v) + [fill] * (width - len(v)) for v in values])
    return out


def micro_batches(indices: list[int], parts: int) -> list[list[int]]:
    """Split one optimizer batch into ``parts`` near-equal contiguous micro-batches (empty ones dropped)."""
    size = -(-len(indices) // parts)
    return [indices[s : s + size] for s in range(0, len(indices), size)]
