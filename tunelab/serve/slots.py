"""The running sequences' KV cache for continuous batching: preallocated buffers, one row (slot) per sequence.

Per model layer, keys and values live in buffers of shape (rows, kv_heads, length, head_dim). The ``n`` running
sequences occupy rows 0..n-1; sequence i's tokens sit in columns [0, length_i) (right padding). A decode step
writes each row's new key/value at its own column length_i and attends over columns [0, max_i length_i] with a
mask (row i sees columns <= length_i), so nothing is concatenated, re-padded or gathered per step. A joining
sequence's prefill keys and values are copied into a free row; a leaving sequence's row is refilled with the last
row (one row copied, not the whole cache). The buffers grow (by copying) when the rows or the longest sequence
outgrow them and keep that size while the batch runs.

Profiled on smollm2-135m with 32 running sequences (bench/serve_profile.py), transformers' ``DynamicCache``
(``torch.cat`` of the whole cache per layer and step) plus re-padding on join and gathering on leave took about a
third of each decode step; this removes that work. It plugs in through transformers' ``Cache`` class (the object
a model's attention calls ``update(keys, values, layer_idx)`` on) and a prepared 4D mask, which transformers uses
as given.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

GROW_COLUMNS = 256  # columns added when the longest sequence outgrows the buffers (amortises the copy)


class SlotLayer(CacheLayerMixin):
    """One layer's buffers; ``update`` writes the step's keys/values at each row's own column."""

    is_sliding = False

    def __init__(self, owner: "SlotCache", keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.owner, self.keys, self.values, self.is_initialized = owner, keys, values, True

    def lazy_initialization(self, key_states, value_states) -> None:  # the buffers exist from the start
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """key_states/value_states (n, kv_heads, 1, head_dim) -> the (n, kv_heads, width, head_dim) views to attend."""
        o, dim = self.owner, self.keys.shape[-1]
        flat = o.flat_columns(self.keys.shape)  # (n * kv_heads,) row i, head h -> its column length_i
        self.keys.view(-1, dim).index_copy_(0, flat, key_states.reshape(-1, dim))
        self.values.view(-1, dim).index_copy_(0, flat, value_states.reshape(-1, dim))
        return self.keys[: o.n, :, : o.width], self.values[: o.n, :, : o.width]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.width, 0

    def get_seq_length(self) -> int:
        return self.owner.width - 1

    def get_max_length(self) -> int:
        return -1


class SlotCache(Cache):
    """The buffers of every layer plus each running row's length; see the module docstring."""

    def __init__(self, like: list[tuple[torch.Tensor, torch.Tensor]], rows: int, columns: int):
        """``like``: one (keys, values) pair per layer, (any, kv_heads, any, head_dim), giving shapes and dtype."""
        self.n, self.width, self._flat = 0, 1, None
        self.lengths = torch.zeros(0, dtype=torch.long, device=like[0][0].device)  # (n,) tokens per row
        self.index = torch.arange(0, device=self.lengths.device)
        layers = [SlotLayer(self, _buffer(k, rows, columns), _buffer(v, rows, columns)) for k, v in like]
        super().__init__(layers=layers)

    @property
    def capacity(self) -> tuple[int, int]:
        """(rows, columns) the buffers hold now."""
        return tuple(self.layers[0].keys.shape[i] for i in (0, 2))

    def step_mask(self) -> torch.Tensor:
        """Prepare one decode step: grow the columns if needed; the (n, 1, 1, width) mask (row i sees columns <=
        length_i, its cached tokens and the one being written)."""
        self.width, self._flat = int(self.lengths.max()) + 1, None
        if self.width > self.capacity[1]:
            self._grow(self.capacity[0], self.width + GROW_COLUMNS)
        columns = torch.arange(self.width, device=self.lengths.device)
        return (columns[None, :] <= self.lengths[:, None])[:, None, None, :]

    def flat_columns(self, shape: torch.Size) -> torch.Tensor:
        """Where each (row, head) writes this step in a buffer of ``shape`` seen as (rows * heads * columns, dim):
        (n * kv_heads,) indices, computed once per step (an ``index_copy_`` on them is several times faster than
        indexing rows and columns together)."""
        if self._flat is None:
            _, heads, columns, _ = shape
            base = (self.index[:, None] * heads + torch.arange(heads, device=self.index.device)[None, :]) * columns
            self._flat = (base + self.lengths[:, None]).reshape(-1)
        return self._flat

    def advance(self) -> None:
        """After a decode step: every row holds one more token."""
        self.lengths += 1

    def join(self, layers: list[tuple[torch.Tensor, torch.Tensor]], mask: torch.Tensor) -> None:
        """Append rows from a prefill: ``layers`` one (keys, values) pair per layer, (r, kv_heads, T, head_dim), whose
        real columns are where ``mask`` (r, T) is 1 (left padding, or a copied prefix then left padding)."""
        r, lengths = mask.shape[0], mask.sum(1).long()  # (r,)
        longest = int(lengths.max())
        rows, columns = self.capacity
        if self.n + r > rows or longest > columns:
            self._grow(max(rows, min(2 * rows, 1024), self.n + r), max(columns, longest + GROW_COLUMNS))
        # (r, longest): the source column of each destination column; past a row's length it repeats the row's last
        # real column (masked out in attention, finite)
        order = torch.argsort(mask.long(), dim=1, descending=True, stable=True)[:, :longest]
        last = order.gather(1, lengths[:, None] - 1)  # (r, 1)
        order = torch.where(torch.arange(longest, device=mask.device)[None, :] < lengths[:, None], order, last)
        for layer, pair in zip(self.layers, layers):
            for buf, src in zip((layer.keys, layer.values), pair):
                idx = order[:, None, :, None].expand(r, src.shape[1], longest, src.shape[3])
                buf[self.n : self.n + r, :, :longest] = src.gather(2, idx)
        self._resize(self.n + r, torch.cat([self.lengths, lengths.to(self.lengths.device)]))

    def drop(self, gone: list[int]) -> list[int]:
        """Remove rows ``gone``: each hole is refilled with the current last row. Returns the new order as old row
        indices (row k now holds what row ``order[k]`` held)."""
        order = list(range(self.n))
        lengths = self.lengths.clone()
        for g in sorted(gone, reverse=True):
            last = len(order) - 1
            if g != last:
                width = int(lengths[last])
                for layer in self.layers:
                    layer.keys[g, :, :width] = layer.keys[last, :, :width]
                    layer.values[g, :, :width] = layer.values[last, :, :width]
                lengths[g] = lengths[last]
                order[g] = order[last]
            order.pop()
        self._resize(len(order), lengths[: len(order)])
        return order

    def _resize(self, n: int, lengths: torch.Tensor) -> None:
        self.n, self.lengths = n, lengths
        self.index = torch.arange(n, device=lengths.device)

    def _grow(self, rows: int, columns: int) -> None:
        for layer in self.layers:
            for name in ("keys", "values"):
                old = getattr(layer, name)
                new = _buffer(old, rows, columns)
                new[: self.n, :, : old.shape[2]] = old[: self.n]
                setattr(layer, name, new)


def _buffer(like: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """Zeros (rows, kv_heads, columns, head_dim): unused columns must hold finite values (masked weights are 0, and
    0 * NaN would not be)."""
    return torch.zeros(rows, like.shape[1], columns, like.shape[3], dtype=like.dtype, device=like.device)
