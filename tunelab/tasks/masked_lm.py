"""Masked language modelling: domain-adaptive pretraining of encoders (BERT, MiniLM...) on plain text or any text
column, before a task is fine-tuned from the run folder (``model.name: RUN``).

Masking is dynamic (BERT): each time a training batch is formed, ``task.mask_probability`` of the tokens (or of the
words, with ``task.whole_word``) are chosen; a chosen token becomes [MASK] 80% of the time, a random token 10%, and
stays 10%; only chosen tokens are in the loss. Dev masks are drawn once (seeded), so dev perplexity compares across
evaluations and runs. torch is imported inside functions.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from functools import partial
from typing import Literal

from pydantic import Field

from tunelab.data import sources
from tunelab.errors import DataError, TunelabError
from tunelab.schema import Strict
from tunelab.tasks.base import ItemLogits, Prepared, Table, UnlabelledTask
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.objective import Objective


class Config(Strict):
    """The ``task:`` section of masked_lm (masking)."""

    name: Literal["masked_lm"] = "masked_lm"
    mask_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens (or words) chosen for prediction.")
    whole_word: bool = Field(
        False, description="Choose whole words: every sub-token of a chosen word is masked together."
    )
    top_k: int = Field(5, ge=1, le=100, description="predict: candidates listed for each [MASK] of an input.")


@dataclass(frozen=True)
class TextInput:
    """A prediction input: text holding mask tokens, or (``mask_word`` set) text whose word at that position
    (0-based, split on whitespace) is replaced by the tokenizer's mask token."""

    text: str
    line: int
    mask_word: int | None = None


class MaskedLM(UnlabelledTask):
    """Predict masked tokens of unlabelled text (continued pretraining of encoders)."""

    name = "masked_lm"
    Config = Config
    auto_class = "AutoModelForMaskedLM"
    row_kind = "text"
    metrics = (
        Metric("loss", False, "mean cross-entropy over the masked tokens of dev (fixed, seeded masks)"),
        Metric("perplexity", False, "exp(loss)"),
        Metric("accuracy", True, "share of masked dev tokens predicted exactly"),
    )

    def check(self, cfg) -> None:
        pass

    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        d = cfg.data
        table = sources.read_table(
            path,
            text_column=d.text_column,
            label_column=None,
            format=d.format,
            has_header=d.has_header,
            on_error=d.on_error,
            delimiter=d.delimiter,
            encoding=d.encoding,
        )
        if not with_labels:
            return Table([TextInput(r.text, r.line) for r in table.rows], table.skipped)
        return Table(table.rows, table.skipped)

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        from tunelab.tasks.classification import split_source

        _check_tokenizer(tokenizer, cfg.model.name)
        feats = {s: encode(tokenizer, [r.text for r in rows], cfg.model.max_length) for s, rows in splits.items()}
        for split, rows in splits.items():
            if not feats[split]:
                raise DataError(f"{split_source(cfg, split)}: no text to mask")
        t = cfg.task
        collate = partial(collate_masked, tokenizer=tokenizer, probability=t.mask_probability, whole_word=t.whole_word)
        dev = evaluator(tokenizer, feats["dev"], t.mask_probability, t.whole_word, cfg.train.seed)
        test = (
            evaluator(tokenizer, feats["test"], t.mask_probability, t.whole_word, cfg.train.seed)
            if "test" in feats
            else None
        )
        objective = Objective(self.forward, self.loss, count)
        info = {"train_texts": len(feats["train"]), "dev_texts": len(feats["dev"])}
        return Prepared(feats, collate, objective, dev, dev, test, info=info)

    def forward(self, model, batch: dict):
        import torch

        torch.rand(())  # advance torch's random state: the next batch's masks are seeded from it (collate_masked)
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (batch, seq, vocab)

    def loss(self, outputs, batch: dict):
        import torch.nn.functional as F

        labels = batch["labels"]
        mask = labels != -100
        ce = F.cross_entropy(outputs[mask].float(), labels[mask], reduction="sum")  # masked positions only
        return ce, int(mask.sum())

    def item_logits(self, outputs, batch: dict) -> ItemLogits:
        mask = batch["labels"] != -100  # (batch, seq)
        return ItemLogits(mask.nonzero()[:, 0], batch["labels"][mask], outputs[mask])

    def evaluator(self, run, rows: list, source: str, log) -> Evaluator:
        feats = encode(run.tokenizer, [r.text for r in rows], run.cfg.model.max_length)
        t = run.cfg.task
        return evaluator(run.tokenizer, feats, t.mask_probability, t.whole_word, run.cfg.train.seed)

    def parse_inputs(self, lines, source: str) -> list[TextInput]:
        """Each non-blank line is a text holding the tokenizer's mask token (e.g. [MASK]), or JSON {"text": TEXT}."""
        out = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            text = line.strip()
            if text.startswith("{"):
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise TunelabError(f"{source}:{n}: not valid JSON ({exc.msg})") from None
                text = obj.get("text") if isinstance(obj, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise TunelabError(f'{source}:{n}: expected text, or JSON {{"text": TEXT}} with non-empty text')
            out.append(TextInput(text, n))
        return out

    def predict(self, run, inputs: list[TextInput]) -> list[dict]:
        """The ``task.top_k`` most likely tokens (with probabilities) for each mask token of each input."""
        import torch

        tok, model = run.tokenizer, run.model
        device = next(model.parameters()).device
        out = []
        for i in inputs:
            text = i.text
            if i.mask_word is not None:
                words = text.split()
                text = " ".join(words[: i.mask_word] + [tok.mask_token] + words[i.mask_word + 1 :])
            if tok.mask_token not in text:
                raise TunelabError(f"input line {i.line}: no {tok.mask_token} in the text to fill in")
            enc = tok(text, truncation=True, max_length=run.cfg.model.max_length, return_tensors="pt").to(device)
            with torch.no_grad():
                probs = model(**enc).logits[0].softmax(-1)  # (seq, vocab)
            where = (enc["input_ids"][0] == tok.mask_token_id).nonzero()[:, 0].tolist()
            fills = []
            for pos in where:
                p, ids = probs[pos].topk(run.cfg.task.top_k)
                fills.append(
                    [{"token": tok.decode([t]).strip(), "p": round(float(q), 4)} for q, t in zip(p, ids.tolist())]
                )
            out.append({"text": i.text, "fills": fills})
        return out

    def reference(self, row) -> tuple[TextInput, dict]:
        """The text with its middle word masked, and that word as the one fill with probability 1."""
        words = row.text.split()
        middle = len(words) // 2
        return TextInput(row.text, row.line, middle), {"fills": [[{"token": words[middle], "p": 1.0}]]}

    def prompt_template(self, run) -> None:
        return None

    def prompts(self, rows: list) -> list:
        return []


def _check_tokenizer(tokenizer, name: str) -> None:
    if tokenizer.mask_token_id is None:
        raise DataError(f"model '{name}': its tokenizer has no mask token; masked_lm needs an encoder such as BERT")


# ---------------------------------------------------------------- encoding and masking (pure)


def encode(tokenizer, texts: list[str], max_length: int) -> list[dict]:
    """Token ids (cut to ``max_length``), which word each token belongs to (-1 for special tokens) and which
    tokens are special (never masked)."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    out = []
    for k, ids in enumerate(enc["input_ids"]):
        special = enc["special_tokens_mask"][k]
        out.append({"input_ids": list(ids), "word_ids": word_ids(tokenizer, enc, k, ids, special)})
    return out


def word_ids(tokenizer, enc, k: int, ids: list[int], special: list[int]) -> list[int]:
    """Word index per token (-1: special token). Fast tokenizers know their words; for slow WordPiece tokenizers a
    '##' token continues the word before it."""
    if tokenizer.is_fast:
        return [-1 if s or w is None else w for w, s in zip(enc.word_ids(k), special)]
    words, current = [], -1
    for tok, s in zip(tokenizer.convert_ids_to_tokens(ids), special):
        if s:
            words.append(-1)
            continue
        if not tok.startswith("##") or current < 0:
            current += 1
        words.append(current)
    return words


def choose(words: list[int], probability: float, whole_word: bool, rng: random.Random) -> list[bool]:
    """Which tokens are predicted: each non-special token with ``probability`` (or each word, all its tokens
    together, with ``whole_word``); at least one when the text has any non-special token."""
    if whole_word:
        picked = {w for w in sorted(set(words) - {-1}) if rng.random() < probability}
        chosen = [w in picked for w in words]
    else:
        chosen = [w != -1 and rng.random() < probability for w in words]
    candidates = [i for i, w in enumerate(words) if w != -1]
    if candidates and not any(chosen):  # a short text still teaches something
        pick = rng.choice(candidates)
        chosen = [x == words[pick] for x in words] if whole_word else [i == pick for i in range(len(words))]
    return chosen


def mask_tokens(
    ids: list[int], chosen: list[bool], mask_id: int, vocab_size: int, rng: random.Random
) -> tuple[list[int], list[int]]:
    """(inputs, labels): chosen tokens become ``mask_id`` 80% of the time, a random token 10%, unchanged 10%;
    labels hold the original id at chosen positions and -100 elsewhere."""
    inputs, labels = list(ids), [-100] * len(ids)
    for i, c in enumerate(chosen):
        if not c:
            continue
        labels[i] = ids[i]
        r = rng.random()
        if r < 0.8:
            inputs[i] = mask_id
        elif r < 0.9:
            inputs[i] = rng.randrange(vocab_size)
    return inputs, labels


def masked(features: list[dict], tokenizer, probability: float, whole_word: bool, rng: random.Random) -> list[dict]:
    out = []
    for f in features:
        chosen = choose(f["word_ids"], probability, whole_word, rng)
        inputs, labels = mask_tokens(f["input_ids"], chosen, tokenizer.mask_token_id, len(tokenizer), rng)
        out.append({"input_ids": inputs, "labels": labels})
    return out


def pad(rows: list[dict], pad_id: int) -> dict:
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    return {
        "input_ids": torch.tensor([r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]),
        "labels": torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows]),
    }  # (batch, width) each


def collate_masked(features: list[dict], tokenizer, probability: float, whole_word: bool) -> dict:
    """A training batch with fresh masks (dynamic masking: the same text is masked differently at each visit).

    Each text's mask is drawn from a generator seeded by (torch's global random state, the text's ids). The state
    does not advance here, so collating a batch whole or in parts masks each text alike (micro-batches, the loss
    contract); ``MaskedLM.forward`` advances it, so the next batch gets new masks even without dropout; and the
    loop saves it in every checkpoint, so a resumed run masks exactly as an uninterrupted one."""
    import hashlib

    import torch

    base = hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest()[:16]
    rows = [
        masked([f], tokenizer, probability, whole_word, random.Random(f"{base}:{f['input_ids']}"))[0] for f in features
    ]
    return pad(rows, tokenizer.pad_token_id)


def count(batch: dict) -> int:
    return int((batch["labels"] != -100).sum())


def evaluator(tokenizer, features: list[dict], probability: float, whole_word: bool, seed: int) -> Evaluator:
    """Loss, perplexity and accuracy on masked tokens; each feature's mask is drawn once from (seed, index)."""
    fixed = [
        masked([f], tokenizer, probability, whole_word, random.Random(f"{seed}:{i}"))[0] for i, f in enumerate(features)
    ]

    def score(model, indices: list[int]) -> list:
        import torch.nn.functional as F

        device = next(model.parameters()).device
        out = []
        for s in range(0, len(indices), 32):
            batch = {
                k: v.to(device) for k, v in pad([fixed[i] for i in indices[s : s + 32]], tokenizer.pad_token_id).items()
            }
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            labels = batch["labels"]
            mask = labels != -100  # (batch, seq)
            ce = F.cross_entropy(logits.transpose(1, 2), labels.clamp_min(0), reduction="none")  # (batch, seq)
            hit = (logits.argmax(-1) == labels) & mask
            for j in range(labels.shape[0]):
                out.append((float((ce[j] * mask[j]).sum()), int(mask[j].sum()), int(hit[j].sum())))
        return out

    def summarize(results: list) -> dict:
        tokens = max(sum(r[1] for r in results), 1)
        loss = sum(r[0] for r in results) / tokens
        return {"loss": loss, "perplexity": math.exp(min(loss, 50)), "accuracy": sum(r[2] for r in results) / tokens}

    return Evaluator(len(fixed), score, summarize)
