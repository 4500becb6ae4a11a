"""Causal-LM data: how examples become features (chat template, loss tokens, overlong handling), packing
with per-example positions, padding collate and the batching facts the report shows. torch is imported
inside functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tunelab.data import templates
from tunelab.errors import DataError


@dataclass(frozen=True)
class LMOptions:
    """How examples become features: chat template, which tokens are in the loss, what to do when too long."""

    template: str
    train_on: str = "assistant"
    overlong: str = "truncate"


@dataclass
class EncodeStats:
    examples: int = 0
    truncated: int = 0
    dropped: int = 0


def options(cfg, tokenizer) -> LMOptions:
    return LMOptions(templates.chat_template(tokenizer, cfg.task.chat_template), cfg.task.train_on, cfg.task.overlong)


def encode(
    rows: list[templates.Example],
    tokenizer,
    max_length: int,
    source: str,
    opts: LMOptions,
    stats: EncodeStats | None = None,
) -> list[dict]:
    """Token ids and labels per example; over-long ones are cut or dropped per ``opts.overlong``."""
    stats = stats if stats is not None else EncodeStats()
    out = []
    for r in rows:
        try:
            ids, labs = (
                templates.tokenize_conversation(tokenizer, r.messages, opts.template, opts.train_on)
                if r.messages is not None
                else templates.tokenize_text(tokenizer, r.text)
            )
        except DataError as exc:
            raise DataError(f"{source}:{r.line}: {exc}") from None
        stats.examples += 1
        if len(ids) > max_length:
            if opts.overlong == "drop":
                stats.dropped += 1
                continue
            ids, labs = ids[:max_length], labs[:max_length]
            stats.truncated += 1
        if all(t == -100 for t in labs[1:]):  # nothing left to learn (reply cut away)
            stats.dropped += 1
            continue
        out.append({"input_ids": ids, "labels": labs})
    return out


def encode_split(
    cfg, tokenizer, opts: LMOptions, rows: list, source: str, log: Callable[[str], None]
) -> tuple[list[dict], dict]:
    """Features of one split per the task options, and its counts (examples, kept, truncated, dropped)."""
    from tunelab.data import cache

    def build() -> tuple[list[dict], EncodeStats]:
        stats = EncodeStats()
        return encode(rows, tokenizer, cfg.model.max_length, source, opts, stats), stats

    key = cache.key(
        rows,
        tokenizer,
        task="causal_lm",
        max_length=cfg.model.max_length,
        template=opts.template,
        train_on=opts.train_on,
        overlong=opts.overlong,
    )
    feats, stats = cache.cached(key, build, cfg.speed.cache, log)
    if stats.truncated or stats.dropped:
        log(
            f"{source}: {stats.truncated} examples truncated, {stats.dropped} dropped (longer than {cfg.model.max_length} tokens)"
        )
    if not feats:
        raise DataError(
            f"{source}: no usable examples after encoding (all longer than model.max_length={cfg.model.max_length}?)"
        )
    return feats, {
        "examples": stats.examples,
        "kept": len(feats),
        "truncated": stats.truncated,
        "dropped": stats.dropped,
    }


def pack(features: list[dict], max_length: int) -> list[dict]:
    """Greedily concatenate examples (in order) into rows of at most ``max_length`` tokens.

    Each row gets position_ids restarting at 0 per example; the first label of each example is
    masked so no token is predicted across an example boundary.
    """
    rows: list[dict] = []
    cur: dict = {"input_ids": [], "labels": [], "position_ids": []}
    for f in features:
        n = len(f["input_ids"])
        if cur["input_ids"] and len(cur["input_ids"]) + n > max_length:
            rows.append(cur)
            cur = {"input_ids": [], "labels": [], "position_ids": []}
        cur["input_ids"] += f["input_ids"]
        cur["labels"] += [-100] + f["labels"][1:]
        cur["position_ids"] += list(range(n))
    if cur["input_ids"]:
        rows.append(cur)
    return rows


def collate(features: list[dict], pad_id: int) -> dict:
    """Right-pad; packed rows (with position_ids) get no attention mask, so positions define the documents."""
    import torch

    from tunelab.data.collate import pad_batch

    batch = pad_batch(features, pad_id)
    if "position_ids" in batch:
        return batch
    width = batch["input_ids"].shape[1]
    batch["attention_mask"] = torch.tensor(
        [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
    )
    return batch


def padding_fraction(batches: list[list[int]]) -> float:
    """Share of padded positions when each batch (a list of lengths) is padded to its longest."""
    total = sum(max(b) * len(b) for b in batches if b)
    return 1 - sum(sum(b) for b in batches) / max(total, 1)


def batching_info(train: list[dict], cfg) -> dict:
    """Training rows and the padding fraction of the default sampler's micro-batches."""
    from tunelab.data.collate import batch_plan

    lengths = [len(f["input_ids"]) for f in train]
    plan = batch_plan(
        lengths,
        cfg.train.batch_size // cfg.train.grad_accum,
        cfg.train.seed,
        0,
        cfg.train.length_grouping and not cfg.task.packing,
    )
    return {
        "padding_fraction": round(padding_fraction([[lengths[i] for i in b] for b in plan]), 4),
        "train_rows": len(train),
    }


# ---------------------------------------------------------------- loss and evaluation
