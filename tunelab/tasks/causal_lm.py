"""Causal language modelling: instruction tuning (chat / Alpaca) and continued pretraining on plain text.

Features are token ids plus labels (-100 outside the loss). Packing concatenates examples into
rows of ``max_length`` with position ids restarting at each example and no attention mask, which
transformers turns into a block-diagonal causal mask (no attention across examples).
torch is imported inside functions (encoding, packing and collate live in lm_data.py, the chunked loss in lm_loss.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import Field

from tunelab.data import templates
from tunelab.errors import DataError, TunelabError
from tunelab.schema import Strict
from tunelab.tasks.base import ItemLogits, Prepared, Table, UnlabelledTask
from tunelab.tasks.lm_data import (  # noqa: F401  (encoding and batching: part of this task's API)
    EncodeStats,
    LMOptions,
    batching_info,
    collate,
    encode,
    encode_split,
    options,
    pack,
    padding_fraction,
)
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.objective import Objective

GENERATION_METRICS = ("rougeL", "bleu", "eos_rate")


class MixFile(Strict):
    train: str = Field(description="An instruction file mixed into training (read like data.train).")
    weight: float = Field(1.0, gt=0, description="Its sampling weight.")


class Config(Strict):
    """The ``task:`` section of causal_lm (data options, loss tokens, packing, dev generations)."""

    name: Literal["causal_lm"] = "causal_lm"
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
    response_column: str | int = Field(
        "response",
        description="CSV/TSV files: the column of the assistant's reply (the user's message is data.text_column).",
    )
    system_column: str | int | None = Field(
        None, description="CSV/TSV files: a column whose value becomes a system message (e.g. the intent); null = none."
    )
    system_template: str = Field(
        "{}", description="How a system_column value is worded as the system message; {} is the value."
    )
    train_weight: float = Field(
        1.0, gt=0, description="Mixed-data SFT: the sampling weight of data.train's batches against task.mix's files."
    )
    mix: list[MixFile] = Field(
        default_factory=list,
        description="Mixed-data SFT: further instruction files [{train: FILE, weight: W}] (same format rules as "
        "data.train); each batch comes from one file, drawn with probability weight / sum of weights.",
    )


@dataclass(frozen=True)
class PromptInput:
    """One prediction input: the prompt (raw text to continue, or chat messages) and how to show it."""

    prompt: str | list
    text: str
    line: int


class CausalLM(UnlabelledTask):
    """Next-token prediction on chats, instructions or plain text; generates."""

    name = "causal_lm"
    Config = Config
    auto_class = "AutoModelForCausalLM"
    row_kind = "conversation"
    metrics = (
        Metric("loss", False, "mean next-token cross-entropy over target tokens"),
        Metric("perplexity", False, "exp(loss)"),
        Metric(
            "rougeL", True, "ROUGE-L F1 of greedy dev generations against the references (needs task.eval_generations)"
        ),
        Metric("bleu", True, "corpus BLEU (sacrebleu, 0-100) of the dev generations (needs task.eval_generations)"),
        Metric("eos_rate", True, "share of dev generations that ended with the end-of-sequence token"),
    )
    generates = True

    def check(self, cfg) -> None:
        if cfg.task.system_column is not None and "{}" not in cfg.task.system_template:
            raise ValueError(
                f"task.system_template: {cfg.task.system_template!r} has no {{}} for the task.system_column value"
            )
        if cfg.train.metric in GENERATION_METRICS and cfg.task.eval_generations == 0:
            raise ValueError(
                f"train.metric: {cfg.train.metric} is measured on dev generations; set task.eval_generations above 0"
            )

    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        if not with_labels:  # prediction input: one prompt per line (see parse_inputs)
            try:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise DataError(f"{path}: cannot read ({exc.strerror})") from None
            return Table(self.parse_inputs(lines, path))
        if _is_table(path, cfg.data.format):
            return _read_chat_table(cfg, path)
        examples = templates.read_examples(path, cfg.data.format, cfg.data.on_error)
        return Table(examples.rows, examples.skipped)

    def read_splits(self, cfg, log) -> dict[str, list]:
        """The base splits, plus ``mix1``, ``mix2``... for the files of ``task.mix`` (mixed-data SFT)."""
        splits = super().read_splits(cfg, log)
        for i, extra in enumerate(cfg.task.mix, start=1):
            table = self.read(cfg, extra.train)
            if not table.rows:
                raise DataError(f"{extra.train}: task.mix[{i - 1}]: no examples")
            splits[f"mix{i}"] = table.rows
            log(f"task.mix[{i - 1}]: {len(table.rows)} examples from {extra.train} (weight {extra.weight})")
        return splits

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        from tunelab.tasks.classification import split_source

        opts = options(cfg, tokenizer)
        feats, info = {}, {}
        for split, rows in splits.items():
            feats[split], info[split] = encode_split(cfg, tokenizer, opts, rows, split_source(cfg, split), log)
        sources = [feats["train"]] + [feats.pop(f"mix{i}") for i in range(1, len(cfg.task.mix) + 1)]
        train = [f for source in sources for f in source]
        if cfg.task.packing:  # each file packed on its own: a row (and a batch) holds one file's examples
            sources = [pack(source, cfg.model.max_length) for source in sources]
        feats["train"] = [f for source in sources for f in source]
        sampler = mixed_sampler(cfg, sources)
        info.update(batching_info(feats["train"], cfg))
        log(
            f"train: {len(train)} examples in {len(feats['train'])} rows ({'packed' if cfg.task.packing else 'padded'}), "
            f"padding {100 * info['padding_fraction']:.1f}%"
        )
        collate_fn = partial(collate, pad_id=tokenizer.pad_token_id)
        final = evaluator(cfg, tokenizer, opts.template, splits["dev"], feats["dev"])
        during = (
            final
            if cfg.train.metric in GENERATION_METRICS
            else evaluator(cfg, tokenizer, opts.template, [], feats["dev"])
        )
        test = evaluator(cfg, tokenizer, opts.template, splits["test"], feats["test"]) if "test" in feats else None
        objective = Objective(partial(self.forward, chunk=cfg.speed.ce_chunk), self.loss, count)
        return Prepared(feats, collate_fn, objective, during, final, test, baseline=True, info=info, sampler=sampler)

    def forward(self, model, batch: dict, chunk: int = 0) -> dict:
        """Logits aligned with the next-token targets, or (``chunk`` > 0, plain linear LM head) the final hidden
        states and the head's weight, so ``loss`` projects only target positions, a chunk at a time."""
        head = lm_head(model) if chunk else None
        if head is None:
            return {"logits": next_token_logits(model, batch)}
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        out = model(**inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
        return {
            "hidden": out.hidden_states[-1][:, :-1],
            "weight": head.weight,
            "chunk": chunk,
        }  # hidden: (batch, seq-1, d)

    def loss(self, outputs: dict, batch: dict):
        import torch.nn.functional as F

        from tunelab.tasks.lm_loss import linear_cross_entropy

        target = batch["labels"][:, 1:]
        mask = target != -100
        if "logits" in outputs:
            ce = F.cross_entropy(outputs["logits"].float().transpose(1, 2), target.clamp_min(0), reduction="none")
            return (ce * mask).sum(), int(mask.sum())
        return linear_cross_entropy(outputs["hidden"][mask], outputs["weight"], target[mask], outputs["chunk"]), int(
            mask.sum()
        )

    def item_logits(self, outputs: dict, batch: dict) -> ItemLogits:
        target = batch["labels"][:, 1:]
        mask = target != -100  # (batch, seq-1): every next-token target
        rows = mask.nonzero()[:, 0]
        if "logits" in outputs:
            return ItemLogits(rows, target[mask], outputs["logits"][mask])  # (items, vocab)
        return ItemLogits(rows, target[mask], hidden=outputs["hidden"][mask], weight=outputs["weight"])

    def evaluator(self, run, rows: list, source: str, log) -> Evaluator:
        opts = options(run.cfg, run.tokenizer)
        feats, _ = encode_split(run.cfg, run.tokenizer, opts, rows, source, log)
        return evaluator(run.cfg, run.tokenizer, opts.template, rows, feats)

    def parse_inputs(self, lines, source: str) -> list[PromptInput]:
        return parse_lines(lines, source)

    def predict(self, run, inputs: list[PromptInput]) -> list[dict]:
        from tunelab.generation import generate

        outs = generate(
            run.model,
            run.tokenizer,
            [i.prompt for i in inputs],
            run.cfg.generation,
            template=self.prompt_template(run),
            log=lambda _m: None,
        )
        return [{"text": i.text, "output": o.text, "finish_reason": o.finish_reason} for i, o in zip(inputs, outs)]

    def reference(self, row: templates.Example) -> tuple[PromptInput, dict]:
        """A chat: the messages before the last assistant reply, and that reply. Plain text: its first half
        (cut at a space) to continue, and the rest."""
        pair = prompt_and_reference(row)
        if pair is not None:
            prompt, reply = pair
            shown = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
            return PromptInput(prompt, shown, row.line), {"output": reply}
        text = row.text or ""
        cut = text.rfind(" ", 0, len(text) // 2 + 1)
        cut = cut if cut > 0 else len(text) // 2
        return PromptInput(text[:cut], text[:cut], row.line), {"output": text[cut:]}

    def prompt_template(self, run) -> str:
        return templates.chat_template(run.tokenizer, run.cfg.task.chat_template)

    def prompts(self, rows: list[templates.Example]) -> list:
        """A chat up to its last assistant reply; a plain text's first half (by words) to continue."""
        out = []
        for row in rows:
            pair = prompt_and_reference(row)
            if pair is not None:
                out.append(pair[0])
            else:
                words = row.text.split()
                out.append(" ".join(words[: max(1, len(words) // 2)]))
        return out


# ---------------------------------------------------------------- encoding


def mixed_sampler(cfg, sources: list[list[dict]]):
    """TaskMixture over data.train and task.mix's files (``sources``: each file's features) with their weights (None
    without task.mix)."""
    if len(sources) == 1:
        return None
    from tunelab.training.mixing import TaskMixture, source_lengths

    weights = [cfg.task.train_weight] + [m.weight for m in cfg.task.mix]
    lengths = source_lengths(sources, cfg.train.length_grouping)
    return TaskMixture.weighted(lengths, cfg.train.batch_size, cfg.train.seed, weights)


def lm_head(model):
    """The LM head when the logits are exactly ``head(final hidden state)``: a plain bias-free Linear, no logit
    scaling or capping, no prompt-learning wrapper (which changes the inputs); else None."""
    import torch
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)
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
    return head if decoder is not inner else None


def next_token_logits(model, batch: dict):
    """(batch, seq-1, vocab) logits predicting tokens 2..seq; prompt methods' virtual positions are dropped."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    seq = inputs["input_ids"].shape[1]
    # use_cache=False: with a cache, transformers ignores packed position_ids and would attend across examples
    logits = model(**inputs, use_cache=False).logits
    return logits[:, logits.shape[1] - seq : -1]


def token_losses(model, batch: dict):
    """Per-token cross-entropy (batch, seq-1) in float32 and the mask of target positions."""
    import torch.nn.functional as F

    logits = next_token_logits(model, batch).float()  # (batch, seq-1, vocab)
    target = batch["labels"][:, 1:]
    mask = target != -100
    return F.cross_entropy(logits.transpose(1, 2), target.clamp_min(0), reduction="none") * mask, mask


def count(batch: dict) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


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


def evaluator(cfg, tokenizer, template: str, rows: list, features: list[dict]) -> Evaluator:
    """Items: every dev feature (loss), then the first ``task.eval_generations`` prompts of ``rows`` (greedy
    generations). Summary: loss, perplexity and, with generations, ROUGE-L, BLEU, EOS rate and samples."""
    t = cfg.task
    gen_cfg = cfg.generation.model_copy(
        update={"max_new_tokens": t.eval_max_new_tokens, "do_sample": False, "num_beams": 1}
    )
    pairs = [p for p in (prompt_and_reference(r) for r in rows[: t.eval_generations]) if p is not None]
    collate_fn = partial(collate, pad_id=tokenizer.pad_token_id)
    n = len(features)

    def generations(gens: list) -> dict:
        metrics = generation_metrics([g[0] for g in gens], [r for _, r in pairs], [g[1] for g in gens])
        metrics["samples"] = [
            {"prompt": p[-1]["content"], "reference": r, "output": g[0], "finish_reason": g[1]}
            for (p, r), g in list(zip(pairs, gens))[: t.report_samples]
        ]
        return metrics

    return loss_then_generations(
        n,
        len(pairs),
        lambda model, indices: _losses(model, features, indices, collate_fn),
        lambda model, indices: _generate(model, tokenizer, [pairs[i][0] for i in indices], gen_cfg, template),
        generations,
    )


def loss_then_generations(n: int, m: int, losses, generate, summarize_generations) -> Evaluator:
    """The evaluator of a generative task: items 0..n-1 are dev features scored by ``losses(model, indices)`` ->
    (summed loss, tokens) each, giving loss and perplexity; items n..n+m-1 are generations, ``generate(model,
    indices)`` -> (text, finish reason) each for generation indices 0..m-1, summarised by
    ``summarize_generations(results)``."""

    def score(model, indices: list[int]) -> list:
        scored = [i for i in indices if i < n]
        out = dict(zip(scored, losses(model, scored)))
        gen = [i for i in indices if i >= n]
        out.update(zip(gen, generate(model, [i - n for i in gen])))
        return [out[i] for i in indices]

    def summarize(results: list) -> dict:
        loss_value = sum(r[0] for r in results[:n]) / max(sum(r[1] for r in results[:n]), 1)
        metrics: dict = {"loss": loss_value, "perplexity": math.exp(min(loss_value, 50))}
        gens = results[n:]
        if gens:
            metrics.update(summarize_generations(gens))
        return metrics

    return Evaluator(n + m, score, summarize)


def _losses(
    model, features: list[dict], indices: list[int], collate_fn, batch_size: int = 16
) -> list[tuple[float, int]]:
    """(summed next-token loss, target tokens) per feature in ``indices`` (length-sorted batches, model's device)."""
    device = next(model.parameters()).device
    order = sorted(indices, key=lambda i: len(features[i]["input_ids"]))
    out = {}
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        batch = {k: v.to(device) for k, v in collate_fn([features[i] for i in idx]).items()}
        ce, mask = token_losses(model, batch)
        for j, i in enumerate(idx):
            out[i] = (float(ce[j].sum()), int(mask[j].sum()))
    return [out[i] for i in indices]


def _generate(model, tokenizer, prompts: list, gen_cfg, template: str) -> list[tuple[str, str]]:
    """(text, finish reason) of a greedy generation per prompt, in the model's own dtype."""
    import torch

    from tunelab.generation import generate

    if not prompts:
        return []
    with torch.autocast(next(model.parameters()).device.type, enabled=False):
        gens = generate(model, tokenizer, prompts, gen_cfg, template=template, log=lambda _m: None)
    return [(g.text, g.finish_reason) for g in gens]


def _is_table(path: str, fmt: str) -> bool:
    """Whether ``path`` is read as a CSV/TSV table (data.format, else its extension before any .gz/.bz2/.xz)."""
    if fmt != "auto":
        return fmt in ("csv", "tsv")
    kept = [s.lower() for s in Path(path).suffixes if s.lower() not in (".gz", ".bz2", ".xz")]
    return bool(kept) and kept[-1] in (".csv", ".tsv")


def _read_chat_table(cfg, path: str) -> Table:
    """One single-turn chat per CSV/TSV row: [system from task.system_column,] user from data.text_column,
    assistant from task.response_column. Errors name ``path:line`` and the column (sources.read_table)."""
    from tunelab.data.sources import read_table

    task, data = cfg.task, cfg.data
    table = read_table(
        path,
        text_column=data.text_column,
        text_pair_column=task.system_column,
        label_column=task.response_column,
        format=data.format,
        has_header=data.has_header,
        on_error=data.on_error,
        delimiter=data.delimiter,
        encoding=data.encoding,
    )
    rows = []
    for r in table.rows:
        msgs = [{"role": "user", "content": r.text.strip()}, {"role": "assistant", "content": r.label}]
        if r.text_pair is not None:
            msgs.insert(0, {"role": "system", "content": task.system_template.replace("{}", r.text_pair.strip())})
        rows.append(templates.Example(msgs, None, r.line))
    return Table(rows, table.skipped)


def parse_lines(lines, source: str) -> list[PromptInput]:
    """Each non-blank line is a user message, or JSON: {"prompt": TEXT} (raw continuation), {"text": TEXT}
    (a user message) or {"messages": [{"role", "content"}, ...]} (a chat to continue)."""
    out = []
    for n, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if not line.lstrip().startswith("{"):
            out.append(PromptInput([{"role": "user", "content": line}], line, n))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TunelabError(f"{source}:{n}: not valid JSON ({exc.msg})") from None
        out.append(_prompt_object(obj, source, n))
    return out


def _prompt_object(obj, source: str, n: int) -> PromptInput:
    if isinstance(obj, dict) and isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
        return PromptInput(obj["prompt"], obj["prompt"], n)
    if isinstance(obj, dict) and isinstance(obj.get("text"), str) and obj["text"].strip():
        return PromptInput([{"role": "user", "content": obj["text"]}], obj["text"], n)
    if isinstance(obj, dict) and isinstance(obj.get("messages"), list) and obj["messages"]:
        msgs = obj["messages"] + (
            [{"role": "assistant", "content": ""}] if obj["messages"][-1].get("role") != "assistant" else []
        )
        try:
            chat = templates.to_messages({"messages": msgs})[:-1]
        except DataError as exc:
            raise TunelabError(f"{source}:{n}: {exc}") from None
        return PromptInput(chat, chat[-1]["content"], n)
    raise TunelabError(
        f'{source}:{n}: expected text, or JSON {{"prompt": TEXT}}, {{"text": TEXT}} or {{"messages": [...]}}'
    )
