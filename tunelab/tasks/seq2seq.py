"""Text-to-text: translation and summarisation with encoder-decoder models (T5, BART, Marian via
AutoModelForSeq2SeqLM; a BERT2BERT-style EncoderDecoderModel warm-started from an encoder) or decoder-only models
(the source goes through ``task.prompt`` as a user turn of the chat template; the loss covers the target only).

Decoder-only pairs are encoded, batched and scored exactly as causal_lm's instruction data (tasks/lm_data.py,
data/templates.py); encoder-decoder pairs get encoder ids and target labels (seq2seq_data.py). Dev metrics:
loss and perplexity on every dev pair, BLEU/chrF/ROUGE-1/2/L on the generations of the first
``task.eval_generations`` dev pairs against all their references. torch is imported inside functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from typing import Literal

from pydantic import Field, field_validator

from tunelab.data import templates
from tunelab.errors import DataError, TunelabError
from tunelab.schema import Strict
from tunelab.tasks import causal_lm, lm_data
from tunelab.tasks.base import ItemLogits, Prepared, Table, UnlabelledTask
from tunelab.tasks.seq2seq_data import Pair, collate_seq2seq, encode_seq2seq, read_pairs, training_pairs
from tunelab.tasks.seq2seq_data import lines as source_lines
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.objective import Objective

GENERATION_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL")
ARCHITECTURES = {
    "encoder_decoder": "AutoModelForSeq2SeqLM",
    "decoder_only": "AutoModelForCausalLM",
    "warm_start": "EncoderDecoderModel",
}
_LM = causal_lm.CausalLM()  # decoder-only pairs train and score exactly as causal_lm's chats


class Config(Strict):
    """The ``task:`` section of seq2seq (columns or parallel files, architecture, prompt, dev generations)."""

    name: Literal["seq2seq"] = "seq2seq"
    source_column: str = Field("source", description="Column or JSON key of the source text (a JSON list is joined).")
    target_column: str = Field(
        "target", description="Column or JSON key of the target; a JSON list holds several references."
    )
    languages: list[str] | None = Field(
        None,
        description="Line-aligned parallel files: [SRC, TGT]; data.train/dev/test name the source side "
        "(train.SRC.gz) and the target side is the same name with .TGT (train.TGT.gz). null = column files.",
    )
    join: str = Field(" ", description="Separator used to join a source given as a JSON list (SciTLDR sentences).")
    targets: Literal["each", "first"] = Field(
        "each", description="Rows with several references: train on each (one pair per reference) or the first."
    )
    architecture: Literal["auto", "encoder_decoder", "decoder_only", "warm_start"] = Field(
        "auto",
        description="auto: from the model (encoder-decoder config -> encoder_decoder; a causal LM -> decoder_only; "
        "an encoder such as BERT -> warm_start, an EncoderDecoderModel whose encoder and decoder both start from it).",
    )
    prompt: str = Field(
        "{source}",
        description="How the source is shown to the model, with {source} (e.g. 'Translate English to German: {source}'): "
        "the user turn for decoder-only models, the encoder input (T5 task prefix) for encoder-decoders.",
    )
    chat_template: str = Field(
        "chatml", description="Decoder-only: template for tokenizers without their own chat template: chatml or alpaca."
    )
    overlong: Literal["truncate", "drop"] = Field(
        "truncate", description="Decoder-only pairs longer than model.max_length: cut to it, or leave out."
    )
    max_target_length: int = Field(128, ge=2, description="Encoder-decoder: longest target in tokens (cut, end kept).")
    eval_generations: int = Field(
        100, ge=0, description="Dev pairs to generate for (BLEU, chrF, ROUGE; decoding per generation:); 0 = loss only."
    )
    eval_max_new_tokens: int = Field(64, ge=1, description="Length cap for dev generations.")
    report_samples: int = Field(5, ge=0, description="Dev generations shown in the report, before and after tuning.")
    baseline: bool = Field(
        True, description="Evaluate the untuned model on dev first (zero-shot scores next to the tuned ones)."
    )

    @field_validator("languages")
    @classmethod
    def _two(cls, v):
        if v is not None and (len(v) != 2 or v[0] == v[1] or not all(s.strip() for s in v)):
            raise ValueError("expected two different language suffixes [SRC, TGT], e.g. [en, de]")
        return v

    @field_validator("prompt")
    @classmethod
    def _has_source(cls, v: str) -> str:
        if "{source}" not in v:
            raise ValueError("must contain {source}, where the source text goes")
        try:
            v.format(source="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{source}} may appear in braces ({exc}); write {{{{ and }}}} for literal braces")
        return v


@dataclass(frozen=True)
class SourceInput:
    """One prediction input: a source text and its line."""

    source: str
    line: int


def architecture(cfg) -> str:
    """The architecture a seq2seq run uses: the configured one, or (auto) what the model's config says."""
    if cfg.task.architecture != "auto":
        return cfg.task.architecture
    from tunelab.models import load as model_load

    src = model_load.resolve(cfg.model.name, cfg.model.gguf_file, cfg.model.revision)
    if src.gguf_file:  # GGUF files hold decoder LMs
        return "decoder_only"
    config = model_load.load_config(src.path)
    if config.is_encoder_decoder:
        return "encoder_decoder"
    kinds = config.architectures or []
    return "decoder_only" if any(k.endswith(("ForCausalLM", "LMHeadModel")) for k in kinds) else "warm_start"


def source_text(cfg, source: str) -> str:
    return cfg.task.prompt.format(source=source)


def as_chat(cfg, pair: Pair) -> templates.Example:
    """A pair as causal_lm's two-turn chat: the prompted source, then the (first) reference."""
    messages = [{"role": "user", "content": source_text(cfg, pair.source)}, pair.messages[1]]
    return templates.Example(messages, None, pair.line)


class Seq2Seq(UnlabelledTask):
    """Source text -> target text (translation, summarisation); generates."""

    name = "seq2seq"
    Config = Config
    auto_class = "AutoModelForSeq2SeqLM"
    row_kind = "conversation"
    metrics = (
        Metric("loss", False, "mean cross-entropy over target tokens"),
        Metric("perplexity", False, "exp(loss)"),
        Metric("bleu", True, "corpus BLEU (sacrebleu, 0-100) of dev generations against every reference"),
        Metric("chrf", True, "corpus chrF (sacrebleu, 0-100) of dev generations against every reference"),
        Metric("rouge1", True, "mean ROUGE-1 F1 of dev generations (best reference)"),
        Metric("rouge2", True, "mean ROUGE-2 F1 of dev generations (best reference)"),
        Metric("rougeL", True, "mean ROUGE-L F1 of dev generations (best reference)"),
    )
    generates = True

    def check(self, cfg) -> None:
        if cfg.train.metric in GENERATION_METRICS and cfg.task.eval_generations == 0:
            raise ValueError(
                f"train.metric: {cfg.train.metric} is measured on dev generations; set task.eval_generations above 0"
            )

    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        if not with_labels:  # prediction input: one source per line, plain or gz/bz2/xz (see parse_inputs)
            return Table(self.parse_inputs(source_lines(path, cfg.data.encoding), path))
        return read_pairs(path, cfg.data, cfg.task)

    def model_class(self, cfg) -> str:
        return ARCHITECTURES[architecture(cfg)]

    # ------------------------------------------------------------ training

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        from tunelab.tasks.classification import split_source

        arch = architecture(cfg)
        log(f"seq2seq: {arch} model")
        decoder_only = arch == "decoder_only"
        template = templates.chat_template(tokenizer, cfg.task.chat_template) if decoder_only else None
        feats, info = {}, {}
        for split, rows in splits.items():
            pairs = training_pairs(rows, cfg.task.targets) if split == "train" else rows
            feats[split], info[split] = _features(cfg, tokenizer, template, pairs, split_source(cfg, split), log)
        pad = tokenizer.pad_token_id
        collate = partial(lm_data.collate if decoder_only else collate_seq2seq, pad_id=pad)

        def make(rows, features, generations: bool) -> Evaluator:
            return evaluator(cfg, tokenizer, template, rows if generations else [], features, collate)

        final = make(splits["dev"], feats["dev"], True)
        during = final if cfg.train.metric in GENERATION_METRICS else make([], feats["dev"], False)
        test = make(splits["test"], feats["test"], True) if "test" in feats else None
        objective = Objective(
            partial(self.forward, chunk=cfg.speed.ce_chunk), self.loss, partial(count, shifted=decoder_only)
        )
        return Prepared(feats, collate, objective, during, final, test, baseline=cfg.task.baseline, info=info)

    def forward(self, model, batch: dict, chunk: int = 0) -> dict:
        """Encoder-decoder: logits (batch, target, vocab) for every label position. Decoder-only: causal_lm's
        next-token outputs (labels mask the prompt)."""
        if not model.config.is_encoder_decoder:
            return {**_LM.forward(model, batch, chunk), "shifted": True}
        labels = batch["labels"]
        decoder_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)  # (batch, target): start + labels[:-1]
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=decoder_ids,
            use_cache=False,
        )
        return {"logits": out.logits, "shifted": False}

    def loss(self, outputs: dict, batch: dict):
        import torch.nn.functional as F

        if outputs["shifted"]:
            return _LM.loss(outputs, batch)
        target = batch["labels"]  # (batch, target)
        mask = target != -100
        ce = F.cross_entropy(outputs["logits"].float().transpose(1, 2), target.clamp_min(0), reduction="none")
        return (ce * mask).sum(), int(mask.sum())

    def item_logits(self, outputs: dict, batch: dict) -> ItemLogits:
        if outputs["shifted"]:
            return _LM.item_logits(outputs, batch)
        target = batch["labels"]
        mask = target != -100  # (batch, target)
        return ItemLogits(mask.nonzero()[:, 0], target[mask], outputs["logits"][mask])  # (items, vocab)

    # ------------------------------------------------------------ using a trained run

    def evaluator(self, run, rows: list, source: str, log) -> Evaluator:
        cfg, tokenizer = run.cfg, run.tokenizer
        decoder_only = not run.model.config.is_encoder_decoder
        template = templates.chat_template(tokenizer, cfg.task.chat_template) if decoder_only else None
        feats, _ = _features(cfg, tokenizer, template, rows, source, log)
        collate = partial(lm_data.collate if decoder_only else collate_seq2seq, pad_id=tokenizer.pad_token_id)
        return evaluator(cfg, tokenizer, template, rows, feats, collate)

    def parse_inputs(self, lines, source: str) -> list[SourceInput]:
        """Each non-blank line is a source text, or JSON {"source": TEXT} (also "text"; a list is joined by a space)."""
        out = []
        for n, line in enumerate(lines, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if not line.lstrip().startswith("{"):
                out.append(SourceInput(line.strip(), n))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TunelabError(f"{source}:{n}: not valid JSON ({exc.msg})") from None
            value = obj.get("source", obj.get("text")) if isinstance(obj, dict) else None
            value = " ".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else value
            if not isinstance(value, str) or not value.strip():
                raise TunelabError(f'{source}:{n}: expected text, or JSON {{"source": TEXT}} with non-empty text')
            out.append(SourceInput(value.strip(), n))
        return out

    def predict(self, run, inputs: list[SourceInput]) -> list[dict]:
        from tunelab.generation import generate

        prompts = self.prompts_of(run.cfg, run.model, [i.source for i in inputs])
        outs = generate(
            run.model,
            run.tokenizer,
            prompts,
            run.cfg.generation,
            template=self.prompt_template(run),
            log=lambda _m: None,
        )
        return [{"text": i.source, "output": o.text, "finish_reason": o.finish_reason} for i, o in zip(inputs, outs)]

    def reference(self, row: Pair) -> tuple[SourceInput, dict]:
        return SourceInput(row.source, row.line), {"output": row.references[0]}

    def prompt_template(self, run) -> str | None:
        if run.model.config.is_encoder_decoder:
            return None
        return templates.chat_template(run.tokenizer, run.cfg.task.chat_template)

    def generation_input(self, run, texts: list[str]) -> list:
        """Raw texts as the run learnt its sources: through ``task.prompt`` (and a user turn for decoder-only)."""
        return self.prompts_of(run.cfg, run.model, texts)

    def prompts(self, rows: list[Pair]) -> list:
        """Each pair's source as a user message (the chat-template form ``generate`` takes); the configured
        ``task.prompt`` is applied by ``predict`` and the evaluator, which know the run."""
        return [[{"role": "user", "content": r.source}] for r in rows]

    @staticmethod
    def prompts_of(cfg, model, sources: list[str]) -> list:
        """Generation prompts of source texts: the prompted text (encoder-decoder) or a one-message chat."""
        texts = [source_text(cfg, s) for s in sources]
        if model.config.is_encoder_decoder:
            return texts
        return [[{"role": "user", "content": t}] for t in texts]


def count(batch: dict, shifted: bool) -> int:
    """Target tokens in the loss; decoder-only labels are shifted by one (their first position predicts nothing)."""
    labels = batch["labels"]
    return int((labels[:, 1:] != -100).sum()) if shifted else int((labels != -100).sum())


def _features(cfg, tokenizer, template: str | None, pairs: list[Pair], source: str, log) -> tuple[list[dict], dict]:
    """Features of pairs: causal_lm's chat encoding (decoder-only, ``template`` given) or encoder ids + labels."""
    if template is not None:
        opts = lm_data.LMOptions(template, "assistant", cfg.task.overlong)
        return lm_data.encode_split(cfg, tokenizer, opts, [as_chat(cfg, p) for p in pairs], source, log)
    feats, cut = encode_seq2seq(
        tokenizer,
        [source_text(cfg, p.source) for p in pairs],
        [p.references[0] for p in pairs],
        cfg.model.max_length,
        cfg.task.max_target_length,
    )
    if cut:
        log(f"{source}: {cut} pairs cut to model.max_length / task.max_target_length")
    if not feats:
        raise DataError(f"{source}: no pairs")
    return feats, {"examples": len(pairs), "kept": len(feats), "truncated": cut, "dropped": 0}


def evaluator(cfg, tokenizer, template: str | None, rows: list[Pair], features: list[dict], collate) -> Evaluator:
    """Items: every dev feature (loss), then the first ``task.eval_generations`` pairs of ``rows`` (generations).
    Summary: loss, perplexity and, with generations, BLEU, chrF, ROUGE-1/2/L, samples and every prediction."""
    from tunelab.evaluation.text_metrics import all_metrics

    t = cfg.task
    gen_cfg = cfg.generation.model_copy(update={"max_new_tokens": t.eval_max_new_tokens})
    pairs = rows[: t.eval_generations]
    n = len(features)

    def generations(gens: list) -> dict:
        metrics = all_metrics([g[0] for g in gens], [list(p.references) for p in pairs])
        metrics["samples"] = [
            {"prompt": p.source, "reference": p.references[0], "output": g[0], "finish_reason": g[1]}
            for p, g in list(zip(pairs, gens))[: t.report_samples]
        ]
        metrics["predictions"] = [
            {"line": p.line, "source": p.source, "references": list(p.references), "output": g[0]}
            for p, g in zip(pairs, gens)
        ]
        return metrics

    def generate(model, indices: list[int]) -> list:
        prompts = Seq2Seq.prompts_of(cfg, model, [pairs[i].source for i in indices])
        return causal_lm._generate(model, tokenizer, prompts, gen_cfg, template)

    return causal_lm.loss_then_generations(
        n, len(pairs), lambda model, indices: _losses(model, features, indices, collate), generate, generations
    )


def _losses(model, features: list[dict], indices: list[int], collate, batch_size: int = 16) -> list[tuple[float, int]]:
    """(summed target-token loss, target tokens) per feature in ``indices`` (length-sorted batches)."""
    device = next(model.parameters()).device
    order = sorted(indices, key=lambda i: len(features[i]["input_ids"]))
    out = {}
    task = Seq2Seq()
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        batch = {k: v.to(device) for k, v in collate([features[i] for i in idx]).items()}
        outputs = task.forward(model, batch)
        for j, i in enumerate(idx):
            one = {k: v[j : j + 1] for k, v in batch.items()}
            total, items = task.loss({**outputs, "logits": outputs["logits"][j : j + 1]}, one)
            out[i] = (float(total), items)
    return [out[i] for i in indices]
