"""Causal language modelling: instruction tuning (chat / Alpaca) and continued pretraining on plain text.

Features are token ids plus labels (-100 outside the loss). Packing concatenates examples into
rows of ``max_length`` with position ids restarting at each example and no attention mask, which
transformers turns into a block-diagonal causal mask (no attention across examples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from tunelab.data import templates
from tunelab.data.collate import pad_batch
from tunelab.errors import DataError
from tunelab.schema import Strict

AUTO_CLASS = "AutoModelForCausalLM"
DEFAULT_METRIC = "loss"
EVAL_BEFORE_TRAINING = True  # the report compares with the untuned model


class Config(Strict):
    """The ``lm:`` config section (causal_lm task only)."""

    chat_template: str = Field(
        "chatml", description="Template for tokenizers without their own chat template: chatml or alpaca."
    )
    train_on: Literal["assistant", "all"] = Field(
        "assistant", description="Tokens in the loss: assistant replies (+ their end-of-turn) or every token."
    )
    overlong: Literal["truncate", "drop"] = Field(
        "truncate", description="Examples longer than model.max_length: cut to it, or leave out (counts are reported)."
    )
    packing: bool = Field(
        False,
        description="Pack several examples per row (positions restart per example, no cross-attention); false = length-grouped padded batches.",
    )
    eval_generations: int = Field(
        20, ge=0, description="Dev prompts to generate for (ROUGE-L, BLEU, EOS rate); 0 = loss only."
    )
    eval_max_new_tokens: int = Field(128, ge=1, description="Length cap for dev generations.")
    report_samples: int = Field(3, ge=0, description="Sample generations shown in the report, before and after tuning.")


def read(data_cfg, path: str, with_labels: bool = True) -> templates.Examples:
    return templates.read_examples(path, data_cfg.format, data_cfg.on_error)


def label_space(rows, source: str) -> None:
    return None


def model_kwargs(labels) -> dict:
    return {}


# ---------------------------------------------------------------- encoding


@dataclass
class EncodeStats:
    examples: int = 0
    truncated: int = 0
    dropped: int = 0


def encode(
    rows: list[templates.Example],
    tokenizer,
    labels,
    max_length: int,
    source: str,
    *,
    template: str,
    train_on: str = "assistant",
    overlong: str = "truncate",
    stats: EncodeStats | None = None,
) -> list[dict]:
    """Token ids and labels per example; over-long ones are cut or dropped per ``overlong``."""
    stats = stats if stats is not None else EncodeStats()
    out = []
    for r in rows:
        try:
            ids, labs = (
                templates.tokenize_conversation(tokenizer, r.messages, template, train_on)
                if r.messages is not None
                else templates.tokenize_text(tokenizer, r.text)
            )
        except DataError as exc:
            raise DataError(f"{source}:{r.line}: {exc}") from None
        stats.examples += 1
        if len(ids) > max_length:
            if overlong == "drop":
                stats.dropped += 1
                continue
            ids, labs = ids[:max_length], labs[:max_length]
            stats.truncated += 1
        if all(t == -100 for t in labs[1:]):  # nothing left to learn (reply cut away)
            stats.dropped += 1
            continue
        out.append({"input_ids": ids, "labels": labs})
    return out


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


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad; packed rows (with position_ids) get no attention mask, so positions define the documents."""
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


# ---------------------------------------------------------------- loss and evaluation


def token_losses(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy (batch, seq-1) in float32 and the mask of target positions."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    # use_cache=False: with a cache, transformers ignores packed position_ids and would attend across examples
    logits = model(**inputs, use_cache=False).logits[:, :-1].float()  # (batch, seq-1, vocab)
    target = batch["labels"][:, 1:]
    mask = target != -100
    ce = F.cross_entropy(logits.transpose(1, 2), target.clamp_min(0), reduction="none")
    return ce * mask, mask


def loss(model, batch: dict, chunk: int = 0) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over target tokens (the loop divides by the token count).

    With ``chunk`` > 0 and a model whose logits are a plain linear head over the decoder's last hidden
    state, the loss is taken by ``linear_cross_entropy`` at target positions only (see there).
    """
    parts = _decoder_and_head(model) if chunk else None
    if parts is None:
        ce, mask = token_losses(model, batch)
        return ce.sum(), int(mask.sum())
    decoder, head = parts
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = decoder(**inputs, use_cache=False).last_hidden_state[:, :-1]  # (batch, seq-1, hidden)
    target = batch["labels"][:, 1:]
    mask = target != -100
    return linear_cross_entropy(hidden[mask], head.weight, target[mask], chunk), int(mask.sum())


def loss_for(cfg) -> Callable:
    """The training loss per the config (``speed.ce_chunk``)."""
    return partial(loss, chunk=cfg.speed.ce_chunk)


def _decoder_and_head(model):
    """(decoder, lm_head) when the model's logits are exactly ``lm_head(decoder(...).last_hidden_state)``; else None.

    Prompt-learning PEFT methods change the inputs in the wrapper's forward, and some models scale or cap
    their logits: those keep the plain loss.
    """
    peft_cfg = getattr(model, "active_peft_config", None)
    if peft_cfg is not None and getattr(peft_cfg, "is_prompt_learning", False):
        return None
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    cfg = getattr(inner, "config", None)
    if (
        type(head) is not torch.nn.Linear
        or head.bias is not None
        or getattr(cfg, "final_logit_softcapping", None)
        or getattr(cfg, "logit_scale", None) not in (None, 1, 1.0)
    ):
        return None
    try:
        decoder = inner.get_decoder()
    except (AttributeError, ValueError):
        return None
    return (decoder, head) if decoder is not inner else None


class _LinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropy of ``hidden @ weight.T`` against ``target``, chunk by chunk, with gradients made in the forward.

    The backward only scales the stored gradients, so no chunk's logits outlive its loop iteration.
    """

    @staticmethod
    def forward(ctx, hidden, weight, target, chunk: int, dtype: torch.dtype):
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        grad_h = torch.empty_like(hidden)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        w = weight.to(dtype)  # (vocab, hidden)
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, hidden.shape[0], chunk):
                h, t = hidden[s : s + chunk].to(dtype), target[s : s + chunk]
                logits = (h @ w.T).float()  # (chunk, vocab)
                lse = torch.logsumexp(logits, dim=-1)
                total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place: d loss / d logits = probs - onehot
                probs[torch.arange(t.shape[0], device=t.device), t] -= 1
                g = probs.to(dtype)
                grad_h[s : s + chunk] = (g @ w).to(hidden.dtype)
                if grad_w is not None:
                    grad_w += (g.T @ h).float()
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(grad_h, grad_w)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        grad_weight = (grad_w * grad_out).to(ctx.weight_dtype) if grad_w is not None else None
        return grad_h * grad_out.to(grad_h.dtype), grad_weight, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """Sum over rows of cross_entropy(hidden @ weight.T, target) without materialising all logits.

    hidden (n, d), weight (vocab, d), target (n,). Matmuls run in bf16 under bf16 autocast (like the
    plain head would), softmax and the loss in float32. Peak extra memory is one (chunk, vocab) block.
    """
    if hidden.shape[0] == 0:
        return (hidden.sum() + weight.sum()) * 0.0
    dtype = (
        torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled(hidden.device.type) else weight.dtype
    )
    return _LinearCrossEntropy.apply(hidden, weight, target, max(1, chunk), dtype)


def count(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


@torch.no_grad()
def dev_loss(model, features: list[dict], collate_fn: Callable, batch_size: int = 16) -> float:
    """Mean next-token loss over all dev target tokens (unpacked, length-sorted batches)."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    total, n = 0.0, 0
    for s in range(0, len(order), batch_size):
        batch = collate_fn([features[i] for i in order[s : s + batch_size]])
        batch = {k: v.to(next(model.parameters()).device) for k, v in batch.items()}
        ce, mask = token_losses(model, batch)
        total, n = total + float(ce.sum()), n + int(mask.sum())
    return total / max(n, 1)


def generation_metrics(predictions: list[str], references: list[str], finish_reasons: list[str]) -> dict:
    """ROUGE-L F1 (mean), corpus BLEU (sacrebleu, 0-100) and the fraction of generations that ended by EOS."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return {
        "rougeL": sum(rouge) / max(len(rouge), 1),
        "bleu": float(sacrebleu.corpus_bleu(predictions, [references]).score) if predictions else 0.0,
        "eos_rate": sum(f == "eos" for f in finish_reasons) / max(len(finish_reasons), 1),
    }


def prompt_and_reference(example: templates.Example) -> tuple[list[dict], str] | None:
    """The messages up to the last assistant reply, and that reply (None for plain text)."""
    if example.messages is None:
        return None
    last = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
    return example.messages[:last], example.messages[last]["content"]


def evaluate(
    model,
    features: list[dict],
    collate_fn: Callable,
    *,
    tokenizer=None,
    rows=None,
    gen_cfg=None,
    template: str | None = None,
    n_samples: int = 3,
) -> dict:
    """Dev loss and perplexity; with ``rows`` and ``gen_cfg``, also generation metrics and a few samples."""
    from tunelab.generation import generate

    loss_value = dev_loss(model, features, collate_fn)
    out: dict = {"loss": loss_value, "perplexity": math.exp(min(loss_value, 50))}
    pairs = [p for p in (prompt_and_reference(r) for r in rows or []) if p is not None]
    if not pairs or gen_cfg is None:
        return out
    with torch.autocast(next(model.parameters()).device.type, enabled=False):  # generate in the model's own dtype
        gens = generate(model, tokenizer, [p for p, _ in pairs], gen_cfg, template=template, log=lambda _m: None)
    refs = [r for _, r in pairs]
    out.update(generation_metrics([g.text for g in gens], refs, [g.finish_reason for g in gens]))
    out["samples"] = [
        {"prompt": p[-1]["content"], "reference": r, "output": g.text, "finish_reason": g.finish_reason}
        for (p, r), g in list(zip(pairs, gens))[:n_samples]
    ]
    return out


# ---------------------------------------------------------------- the recipe's hook


@dataclass
class Prepared:
    features: dict[str, list[dict]]
    collate: Callable
    evaluate: Callable  # during training: dev loss and perplexity (cheap)
    evaluate_final: Callable  # before and after training: also generations and their metrics
    evaluate_test: Callable
    info: dict


def prepare(cfg, tokenizer, splits: dict[str, list], log: Callable[[str], None]) -> Prepared:
    """Encode (and pack) the splits, and build the collate and dev-evaluation functions for the recipe."""
    from tunelab.data.collate import batch_plan

    lm, template = cfg.lm, templates.chat_template(tokenizer, cfg.lm.chat_template)
    sources = {"train": cfg.data.train, "dev": cfg.data.dev or f"{cfg.data.train} (dev split)", "test": cfg.data.test}
    feats, info = {}, {}
    for name, rows in splits.items():
        feats[name], info[name] = encode_split(cfg, tokenizer, template, rows, sources[name], log)
    collate_fn = partial(collate, pad_id=tokenizer.pad_token_id)
    train = feats["train"]
    if lm.packing:
        feats["train"] = pack(train, cfg.model.max_length)
    lengths = [len(f["input_ids"]) for f in feats["train"]]
    plan = batch_plan(
        lengths,
        cfg.train.batch_size // cfg.train.grad_accum,
        cfg.train.seed,
        0,
        cfg.train.length_grouping and not lm.packing,
    )
    info["padding_fraction"] = round(padding_fraction([[lengths[i] for i in b] for b in plan]), 4)
    info["train_rows"] = len(feats["train"])
    log(
        f"train: {len(train)} examples in {len(feats['train'])} rows ({'packed' if lm.packing else 'padded'}), "
        f"padding {100 * info['padding_fraction']:.1f}%"
    )
    evaluate_loss = partial(evaluate, features=feats["dev"], collate_fn=collate_fn)
    evaluate_test = evaluator(cfg, tokenizer, template, splits["test"], feats["test"]) if "test" in feats else None
    return Prepared(
        feats,
        collate_fn,
        evaluate_loss,
        evaluator(cfg, tokenizer, template, splits["dev"], feats["dev"]),
        evaluate_test,
        info,
    )


def encode_split(
    cfg, tokenizer, template: str, rows: list, source: str, log: Callable[[str], None]
) -> tuple[list[dict], dict]:
    """Features of one split per the ``lm`` options, and its counts (examples, kept, truncated, dropped)."""
    from tunelab.data import cache

    def build() -> tuple[list[dict], EncodeStats]:
        stats = EncodeStats()
        return encode(
            rows,
            tokenizer,
            None,
            cfg.model.max_length,
            source,
            template=template,
            train_on=cfg.lm.train_on,
            overlong=cfg.lm.overlong,
            stats=stats,
        ), stats

    key = cache.key(
        rows,
        tokenizer,
        task="causal_lm",
        max_length=cfg.model.max_length,
        template=template,
        train_on=cfg.lm.train_on,
        overlong=cfg.lm.overlong,
    )
    feats, stats = cache.cached(key, build, getattr(getattr(cfg, "speed", None), "cache", False), log)
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


def evaluator(cfg, tokenizer, template: str, rows: list, features: list[dict]) -> Callable:
    """model -> loss, perplexity and (for the first ``lm.eval_generations`` rows) generation metrics and samples."""
    lm = cfg.lm
    gen_cfg = cfg.generation.model_copy(
        update={"max_new_tokens": lm.eval_max_new_tokens, "do_sample": False, "num_beams": 1}
    )
    return partial(
        evaluate,
        features=features,
        collate_fn=partial(collate, pad_id=tokenizer.pad_token_id),
        tokenizer=tokenizer,
        rows=rows[: lm.eval_generations],
        gen_cfg=gen_cfg if lm.eval_generations else None,
        template=template,
        n_samples=lm.report_samples,
    )


def evaluate_file(loaded, path: str, log: Callable[[str], None]) -> dict:
    """`tunelab eval` for a causal-LM run: the run's dev metrics on another file."""
    cfg, tok = loaded.cfg, loaded.tokenizer
    template = templates.chat_template(tok, cfg.lm.chat_template)
    rows = read(cfg.data, path).rows
    feats, _ = encode_split(cfg, tok, template, rows, path, log)
    return evaluator(cfg, tok, template, rows, feats)(loaded.model)
