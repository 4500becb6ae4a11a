"""Token classification (NER): word-level IOB2 tags predicted from sub-word tokens.

Alignment: each word's first sub-word carries its tag (or every sub-word, with
``label_all_subwords``; continuation pieces of a B-X word get I-X); the other
positions are -100 and ignored by the loss. Sentences longer than the model window
are cut into overlapping windows (``stride`` tokens of overlap, cut at word starts
where possible); each word's prediction comes from the window where it has the
most context on both sides. Nothing is truncated.

Features carry bookkeeping keys starting with "_" (sentence index, word index of
each position, gold word tags) that collation leaves out of the tensors.
torch is imported inside functions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.data import conll, tagging
from tunelab.data.conll import Sentence
from tunelab.errors import ConfigError, DataError
from tunelab.schema import Strict
from tunelab.tasks.base import ItemLogits, Prepared, Table, Task
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.objective import Objective

if TYPE_CHECKING:
    import torch

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BATCH = 64  # windows per evaluation/prediction batch


@dataclass(frozen=True)
class Windowing:
    """How sentences become training windows (the task section's ``stride`` and ``label_all_subwords``)."""

    stride: int = 32
    label_all_subwords: bool = False

    @classmethod
    def of(cls, task_cfg) -> "Windowing":
        return cls(task_cfg.stride, task_cfg.label_all_subwords)


class Config(Strict):
    """The ``task:`` section of token classification (NER)."""

    name: Literal["token_classification"] = "token_classification"
    tag_column: int = Field(
        -1, description="CoNLL files: 0-based column holding the tag (-1 = last); the token is column 0."
    )
    token_prefix: str | None = Field(
        None, description="Prefix stripped from every token (e.g. 'en:' in WikiANN files)."
    )
    tag_scheme: Literal["iob2", "bio", "iob1", "bioes", "iobes"] = Field(
        "iob2", description="Tagging scheme of the files; converted to IOB2 on reading."
    )
    repair_tags: bool = Field(
        False, description="Turn an I-X that opens an entity into B-X instead of reporting it as an error."
    )
    label_all_subwords: bool = Field(False, description="Train on every sub-word of a word (not only the first).")
    stride: int = Field(
        32, ge=0, description="Sub-words of overlap between windows of a sentence longer than model.max_length."
    )


class TokenClassification(Task):
    """IOB2 tags per word; entities as character spans of the input text."""

    name = "token_classification"
    Config = Config
    auto_class = "AutoModelForTokenClassification"
    row_kind = "tokens"
    metrics = (
        Metric("f1", True, "entity-level micro F1 (seqeval, strict IOB2)"),
        Metric("precision", True, "entity-level micro precision"),
        Metric("recall", True, "entity-level micro recall"),
        Metric("macro_f1", True, "entity-level F1 averaged over entity types"),
        Metric("token_accuracy", True, "share of words with the gold tag"),
        Metric("loss", False, "mean cross-entropy per labelled sub-word"),
    )

    def check(self, cfg) -> None:
        return None

    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        """A CoNLL/JSONL file (or, for prediction, also .txt raw text) per ``data:`` and the task section."""
        t = cfg.task
        opts = conll.Options(
            tag_column=t.tag_column,
            token_prefix=t.token_prefix,
            tag_scheme=t.tag_scheme,
            repair_tags=t.repair_tags,
            with_labels=with_labels,
            on_error=cfg.data.on_error,
            encoding=cfg.data.encoding,
        )
        table = conll.read(path, cfg.data.format, opts)
        return Table(table.rows, table.skipped)

    def label_space(self, rows: list[Sentence], source: str) -> list[str]:
        return label_space(rows, source)

    def stratify_key(self, row: Sentence):
        return None

    def model_kwargs(self, labels: list[str] | None) -> dict:
        return model_kwargs(labels) if labels is not None else {}

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        from tunelab.data import cache
        from tunelab.data.collate import pad_batch
        from tunelab.tasks.classification import split_source

        opts = Windowing.of(cfg.task)
        feats = {}
        for split, rows in splits.items():
            key = cache.key(
                rows,
                tokenizer,
                task=self.name,
                labels=labels,
                max_length=cfg.model.max_length,
                label_all_subwords=opts.label_all_subwords,
                stride=opts.stride,
            )
            build = partial(encode, rows, tokenizer, labels, cfg.model.max_length, split_source(cfg, split), opts)
            feats[split] = cache.cached(key, build, cfg.speed.cache, log)
        collate = partial(pad_batch, pad_id=tokenizer.pad_token_id)
        dev = evaluator(feats["dev"], labels, collate)
        test = evaluator(feats["test"], labels, collate) if "test" in feats else None
        return Prepared(feats, collate, Objective(self.forward, self.loss, count), dev, dev, test)

    def forward(self, model, batch: dict) -> dict:
        return {"logits": token_logits(model, _inputs(batch))}  # (batch, seq, num_labels)

    def loss(self, outputs: dict, batch: dict):
        import torch.nn.functional as F

        labels = batch["labels"]
        logits = outputs["logits"].float().flatten(0, 1)  # (batch * seq, num_labels)
        return F.cross_entropy(logits, labels.flatten(), ignore_index=-100, reduction="sum"), count(batch)

    def item_logits(self, outputs: dict, batch: dict) -> ItemLogits:
        labels = batch["labels"]
        mask = labels != -100  # (batch, seq): the scored sub-token of each word
        return ItemLogits(mask.nonzero()[:, 0], labels[mask], outputs["logits"][mask])  # logits (items, num_labels)

    def evaluator(self, run, rows: list[Sentence], source: str, log) -> Evaluator:
        from tunelab.data.collate import pad_batch

        feats = encode(rows, run.tokenizer, run.labels, run.cfg.model.max_length, source, Windowing.of(run.cfg.task))
        return evaluator(feats, run.labels, partial(pad_batch, pad_id=run.tokenizer.pad_token_id))

    def parse_inputs(self, lines, source: str) -> list[Sentence]:
        """Raw text lines, or JSON lines with "text" (raw) or "tokens" (pre-tokenised)."""
        return conll.read_lines(lines, source)

    def predict(self, run, inputs: list[Sentence]) -> list[dict]:
        out = predict(
            run.model, run.tokenizer, run.labels, inputs, run.cfg.model.max_length, Windowing.of(run.cfg.task)
        )
        return [{"text": r.text, **o} for r, o in zip(inputs, out)]

    def reference(self, row: Sentence) -> tuple[Sentence, dict]:
        entities = []
        for a, b, kind in tagging.spans(row.tags or []):
            start, end = row.offsets[a][0], row.offsets[b - 1][1]
            entities.append({"start": start, "end": end, "type": kind, "text": row.text[start:end]})
        return Sentence(row.tokens, None, row.line, row.text, row.offsets), {"entities": entities}

    def prompt_template(self, run) -> None:
        return None

    def prompts(self, rows: list) -> list:
        return []


def label_space(rows: list[Sentence], source: str) -> list[str]:
    """O, then B-X and I-X for each entity type seen in training (sorted)."""
    types = tagging.entity_types([t for r in rows for t in r.tags])
    if not types:
        raise DataError(
            f"{source}: no entity tags in the training data (every tag is O); token classification needs at least one entity type"
        )
    return tagging.label_names(types)


def model_kwargs(labels: list[str]) -> dict:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {n: i for i, n in enumerate(labels)},
    }


# ---------------------------------------------------------------- alignment


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """Ids the tokenizer puts before and after a single sequence (BERT: [CLS] / [SEP])."""
    enc = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
    ids, words = enc["input_ids"][0], enc.word_ids(0)
    first = words.index(0)
    last = len(words) - 1 - words[::-1].index(0)
    return ids[:first], ids[last + 1 :]


def windows(word_ids: list[int], capacity: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) sub-word ranges covering the sequence, each at most ``capacity`` long, overlapping by about ``stride``.

    Cuts fall on word starts unless one word alone is longer than the window.
    """
    n = len(word_ids)
    if n <= capacity:
        return [(0, n)]

    def is_start(p: int) -> bool:
        return word_ids[p] != word_ids[p - 1]

    def start_at_or_before(p: int, floor: int) -> int | None:  # latest word start in (floor, p]
        return next((q for q in range(p, floor, -1) if is_start(q)), None)

    out, start = [], 0
    while True:
        end = min(start + capacity, n)
        if end < n:
            end = start_at_or_before(end, start) or end
        out.append((start, end))
        if end >= n:
            return out
        nxt = max(end - stride, start + 1)
        # back to a word start for more overlap; else forward to the next one; else cut inside the word
        start = start_at_or_before(nxt, start) or next((q for q in range(nxt, end) if is_start(q)), nxt)


def window_labels(
    word_ids: list[int], first: list[bool], gold: list[int] | None, all_subwords: bool, inside: dict[int, int]
) -> list[int]:
    """Label id per sub-word: the word's tag on its first piece, -100 (or I-X, with all_subwords) on the others."""
    if gold is None:
        return [-100] * len(word_ids)
    out = []
    for w, is_first in zip(word_ids, first):
        if is_first:
            out.append(gold[w])
        else:
            out.append(inside.get(gold[w], gold[w]) if all_subwords else -100)
    return out


def encode(
    rows: list[Sentence], tokenizer, labels: list[str], max_length: int, source: str, opts: Windowing = Windowing()
) -> list[dict]:
    """Sub-word features, one per window; a tag never seen in training is an error naming the file and line."""
    stride, label_all_subwords = opts.stride, opts.label_all_subwords
    index = {n: i for i, n in enumerate(labels)}
    inside = {index[n]: index["I-" + n[2:]] for n in labels if n.startswith("B-") and "I-" + n[2:] in index}
    prefix, suffix = special_tokens(tokenizer)
    capacity = max_length - len(prefix) - len(suffix)
    for r in rows:
        unknown = sorted({t for t in r.tags or [] if t not in index})
        if unknown:
            raise DataError(
                f"{source}:{r.line}: tag '{unknown[0]}' was not seen in training; known tags: {', '.join(labels)}"
            )
    enc = (
        tokenizer([r.tokens for r in rows], is_split_into_words=True, add_special_tokens=False, verbose=False)
        if rows
        else None
    )
    features = []
    for si, r in enumerate(rows):
        ids, words = enc["input_ids"][si], enc.word_ids(si)
        first = [i == 0 or words[i] != words[i - 1] for i in range(len(words))]
        gold = [index[t] for t in r.tags] if r.tags is not None else None
        if len(ids) > capacity and stride >= capacity:
            raise ConfigError(
                f"task.stride ({stride}) must be smaller than the window of {capacity} sub-words "
                f"(model.max_length minus special tokens) to split the {len(ids)}-sub-word sentence at {source}:{r.line}"
            )
        pad = [-1] * len(prefix), [-1] * len(suffix)
        for a, b in windows(words, capacity, stride):
            lab = window_labels(words[a:b], first[a:b], gold, label_all_subwords, inside)
            features.append(
                {
                    "input_ids": prefix + ids[a:b] + suffix,
                    "attention_mask": [1] * (len(prefix) + b - a + len(suffix)),
                    "labels": [-100] * len(prefix) + lab + [-100] * len(suffix),
                    "_sent": si,
                    "_n": len(r.tokens),
                    "_gold": gold,
                    "_words": pad[0] + [w if f else -1 for w, f in zip(words[a:b], first[a:b])] + pad[1],
                }
            )
    return features


# ---------------------------------------------------------------- training


def _inputs(batch: dict, device=None) -> dict:
    return {k: (v.to(device) if device is not None else v) for k, v in batch.items() if k in MODEL_INPUTS}


def token_logits(model, inputs: dict):
    """(batch, seq, num_labels) logits aligned with input_ids; prompt methods (prompt/p-tuning) prepend
    virtual tokens whose positions come back first, so only the last seq positions are kept."""
    logits = model(**inputs).logits
    return logits[:, logits.shape[1] - inputs["input_ids"].shape[1] :]


def count(batch: dict) -> int:
    return int((batch["labels"] != -100).sum())


# ---------------------------------------------------------------- prediction


def score_windows(model, features: list[dict], indices: list[int], collate, batch_size: int = 64) -> list[tuple]:
    """Per feature in ``indices``: (log-probabilities (seq, num_labels), summed NLL over labelled positions, their count)."""
    import torch

    device = next(model.parameters()).device
    order = sorted(indices, key=lambda i: len(features[i]["input_ids"]))
    out: dict[int, tuple] = {}
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            batch = collate([features[i] for i in idx])
            logp = token_logits(model, _inputs(batch, device)).float().log_softmax(-1).cpu()  # (batch, seq, labels)
            labels = batch["labels"]
            for j, i in enumerate(idx):
                mask = labels[j] != -100
                nll = -float(logp[j][mask].gather(-1, labels[j][mask][:, None]).sum())
                out[i] = (logp[j, : len(features[i]["input_ids"])], nll, int(mask.sum()))
    return [out[i] for i in indices]


def window_scores(model, features: list[dict], collate, batch_size: int = 64):
    """Log-probabilities (seq, num_labels) per feature, in order, and the mean NLL over labelled positions."""
    scored = score_windows(model, features, list(range(len(features))), collate, batch_size)
    nll, n = sum(s[1] for s in scored), sum(s[2] for s in scored)
    return [s[0] for s in scored], nll / max(n, 1)


def merge_windows(features: list[dict], scores: list[torch.Tensor]) -> list[dict[int, torch.Tensor]]:
    """Per sentence, word index -> log-probs from the window where the word has the most context on both sides."""
    n_sents = max((f["_sent"] for f in features), default=-1) + 1
    best: list[dict[int, tuple[int, torch.Tensor]]] = [{} for _ in range(n_sents)]
    for f, sc in zip(features, scores):
        pos = [i for i, w in enumerate(f["_words"]) if w >= 0]
        for i in pos:
            w, ctx = f["_words"][i], min(i - pos[0], pos[-1] - i)
            if w not in best[f["_sent"]] or ctx > best[f["_sent"]][w][0]:
                best[f["_sent"]][w] = (ctx, sc[i])
    return [{w: v for w, (_, v) in b.items()} for b in best]


def decode(word_logp: dict[int, torch.Tensor], n_words: int, labels: list[str]) -> tuple[list[str], list[float]]:
    """Valid IOB2 tags and probabilities for n words (words with no sub-word, e.g. a lone zero-width character, are O)."""
    tags, probs = ["O"] * n_words, [1.0] * n_words
    for w, lp in word_logp.items():
        k = int(lp.argmax())
        tags[w], probs[w] = labels[k], float(lp[k].exp())
    return tagging.repair(tags), probs


def predict_sentences(model, features: list[dict], labels: list[str], collate, batch_size: int = 64):
    """(tags, probs) per sentence, and the dev NLL."""
    scores, nll = window_scores(model, features, collate, batch_size)
    merged = merge_windows(features, scores)
    n_words = {f["_sent"]: f["_n"] for f in features}
    return [decode(merged[s], n_words[s], labels) for s in range(len(merged))], nll


def predict(
    model, tokenizer, labels: list[str], rows: list[Sentence], max_length: int, opts: Windowing = Windowing()
) -> list[dict]:
    """Entities (character offsets into the row's text, type, text, mean word probability) for each row, in order."""
    from tunelab.data.collate import pad_batch

    unlabelled = [Sentence(r.tokens, None, r.line, r.text, r.offsets) for r in rows]
    feats = encode(unlabelled, tokenizer, labels, max_length, "input", Windowing(opts.stride))
    decoded, _ = (
        predict_sentences(model, feats, labels, partial(pad_batch, pad_id=tokenizer.pad_token_id), BATCH)
        if feats
        else ([], 0.0)
    )
    out = []
    for r, (tags, probs) in zip(rows, decoded):
        ents = []
        for a, b, kind in tagging.spans(tags):
            start, end = r.offsets[a][0], r.offsets[b - 1][1]
            ents.append(
                {
                    "start": start,
                    "end": end,
                    "type": kind,
                    "text": r.text[start:end],
                    "score": round(sum(probs[a:b]) / (b - a), 4),
                }
            )
        out.append({"tokens": r.tokens, "tags": tags, "entities": ents})
    return out


# ---------------------------------------------------------------- metrics


def metrics(y_true: list[list[str]], y_pred: list[list[str]], top_confusions: int = 10) -> dict:
    """Entity-level P/R/F1 (seqeval, strict IOB2) micro and macro, per type, token accuracy and frequent confusions."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    rep = classification_report(y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    types = sorted(k for k in rep if not k.endswith(" avg"))
    micro, macro = rep["micro avg"], rep["macro avg"]
    pairs = [(t, p) for ts, ps in zip(y_true, y_pred) for t, p in zip(ts, ps)]
    kind = lambda tag: tag[2:] if tag != "O" else "O"  # noqa: E731
    conf = Counter((kind(t), kind(p)) for t, p in pairs if kind(t) != kind(p))
    return {
        "f1": float(micro["f1-score"]),
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "macro_f1": float(macro["f1-score"]),
        "token_accuracy": sum(t == p for t, p in pairs) / max(len(pairs), 1),
        "per_type": {
            t: {
                "precision": float(rep[t]["precision"]),
                "recall": float(rep[t]["recall"]),
                "f1": float(rep[t]["f1-score"]),
                "support": int(rep[t]["support"]),
            }
            for t in types
        },
        "confusions": [{"true": t, "pred": p, "count": c} for (t, p), c in conf.most_common(top_confusions)],
    }


def evaluator(features: list[dict], labels: list[str], collate, batch_size: int = BATCH) -> Evaluator:
    """Dev loss (mean NLL per labelled sub-word) and entity metrics on whole sentences (windows merged)."""

    def score(model, indices: list[int]) -> list:
        return score_windows(model, features, indices, collate, batch_size)

    def summarize(results: list) -> dict:
        merged = merge_windows(features, [r[0] for r in results])
        n_words = {f["_sent"]: f["_n"] for f in features}
        decoded = [decode(merged[s], n_words[s], labels) for s in range(len(merged))]
        gold = {f["_sent"]: [labels[i] for i in f["_gold"]] for f in features}
        nll = sum(r[1] for r in results) / max(sum(r[2] for r in results), 1)
        return {**metrics([gold[s] for s in range(len(decoded))], [tags for tags, _ in decoded]), "loss": nll}

    return Evaluator(len(features), score, summarize)
