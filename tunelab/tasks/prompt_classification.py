"""Prompt-based classification (LM-BFF / PET style): the template and verbalizer of ``prompt:`` are the head.

Each text is rendered with the template; the class logits are the label scores the pretrained LM head gives the
label words at ``{mask}`` (log of the summed word probabilities, see prompting/verbalizer.py), so no new head is
initialised and training (with any method) moves the LM towards the label words. Data, labels, metrics, predict
and serve are those of classification; only encoding, the forward and the logits differ. Causal LMs score the
words after everything before ``{mask}``; masked LMs (``prompt.lm: masked``, PET) at one mask token per word
token in place of ``{mask}``. torch is imported inside functions.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Literal

from tunelab.data.sources import Row
from tunelab.errors import DataError
from tunelab.schema import Strict
from tunelab.tasks import classification as clf
from tunelab.tasks.base import Prepared
from tunelab.training.evaluation import Evaluator
from tunelab.training.objective import Objective

if TYPE_CHECKING:
    import torch


class Config(Strict):
    """The ``task:`` section of prompt_classification (the template and label words are in ``prompt:``)."""

    name: Literal["prompt_classification"] = "prompt_classification"


class PromptClassification(clf.Classification):
    """Classification read from a causal LM's word predictions after a template (no new head)."""

    name = "prompt_classification"
    Config = Config
    auto_class = "AutoModelForCausalLM"
    balances = False  # its objective is plain cross-entropy over label scores (no class weights or focal loss yet)

    def check(self, cfg) -> None:
        if cfg.prompt.verbalizer is None:
            raise ValueError(
                "prompt.verbalizer: task prompt_classification needs label words, e.g. {0: [bad], 1: [good]}"
            )
        if cfg.prompt.lm != "masked" and "{text}" in cfg.prompt.template.partition("{mask}")[2]:
            raise ValueError("prompt.template: a causal LM reads left to right; put {mask} after {text}")

    def model_kwargs(self, labels: list[str] | None) -> dict:
        return {}

    def model_class(self, cfg) -> str:
        return "AutoModelForMaskedLM" if cfg.prompt.lm == "masked" else "AutoModelForCausalLM"

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        words = label_words(cfg, tokenizer, labels)
        feats = {
            split: encode(rows, tokenizer, (cfg, labels), clf.split_source(cfg, split))
            for split, rows in splits.items()
        }
        collate = partial(collate_words, words=words, pad_id=tokenizer.pad_token_id, mask_id=mask_id(cfg, tokenizer))
        dev = clf.evaluator(feats["dev"], labels, collate, logits_fn=prompt_logits)
        test = clf.evaluator(feats["test"], labels, collate, logits_fn=prompt_logits) if "test" in feats else None
        log(f"prompt head: {len(words)} label words over {len(labels)} labels, template {cfg.prompt.template!r}")
        return Prepared(feats, collate, Objective(self.forward, self.loss, clf.count), dev, dev, test, baseline=True)

    def forward(self, model, batch: dict) -> dict:
        return {"logits": prompt_logits(model, batch)}  # (batch, classes)

    def evaluator(self, run, rows: list[Row], source: str, log) -> Evaluator:
        feats = encode(rows, run.tokenizer, (run.cfg, run.labels), source)
        collate = run_collate(run)
        return clf.evaluator(feats, run.labels, collate, logits_fn=prompt_logits)

    def predict(self, run, inputs: list[Row]) -> list[dict]:
        unlabelled = [Row(r.text, r.text_pair, None, r.line) for r in inputs]
        feats = encode(unlabelled, run.tokenizer, (run.cfg, run.labels), "input")
        collate = run_collate(run)
        batches = [collate(feats[s : s + clf.PREDICT_BATCH]) for s in range(0, len(feats), clf.PREDICT_BATCH)]
        probs = clf.predict_proba(run.model, batches, run.temperature, logits_fn=prompt_logits) if feats else []
        out = []
        for r, p in zip(inputs, probs):
            label = {
                "label": run.labels[int(p.argmax())],
                "probs": {n: round(float(x), 6) for n, x in zip(run.labels, p)},
            }
            out.append({"text": r.text, **({"text_pair": r.text_pair} if r.text_pair is not None else {}), **label})
        return out


# ---------------------------------------------------------------- pure parts


def mask_id(cfg, tokenizer) -> int | None:
    """The mask token id for masked LMs (None for causal LMs); an error when the tokenizer has none."""
    if cfg.prompt.lm != "masked":
        return None
    if tokenizer.mask_token_id is None:
        raise DataError("prompt.lm: masked, but the model's tokenizer has no mask token")
    return tokenizer.mask_token_id


def run_collate(run):
    """The collate function of a loaded run."""
    words = label_words(run.cfg, run.tokenizer, run.labels)
    return partial(
        collate_words, words=words, pad_id=run.tokenizer.pad_token_id, mask_id=mask_id(run.cfg, run.tokenizer)
    )


def label_words(cfg, tokenizer, labels: list[str]) -> list[tuple[int, tuple[int, ...]]]:
    """(label index, token ids) of every label word, in verbalizer order."""
    from tunelab.prompting import verbalizer as vb

    verb = vb.build_verbalizer(cfg.prompt.verbalizer, labels, tokenizer, cfg.prompt.word_prefix)
    norm = cfg.prompt.scoring == "mean"
    return [(li, ids, norm) for li, words in enumerate(verb.words) for ids in words]


def encode(rows: list[Row], tokenizer, run: tuple, source: str) -> list[dict]:
    """Prompt token ids (what comes before the label word) and label ids; long texts lose their beginning so the
    template's end (next to the word) is kept. ``run`` is (cfg, labels)."""
    from tunelab.prompting import scoring
    from tunelab.prompting import verbalizer as vb

    cfg, labels = run
    index = {n: i for i, n in enumerate(labels)}
    start, end = vb.special_tokens(tokenizer)
    masked = cfg.prompt.lm == "masked"
    if cfg.prompt.instruction:
        start = start + tokenizer(scoring.prefix_text(cfg.prompt, []), add_special_tokens=False)["input_ids"]
    start = start or [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0]
    budget = max(cfg.model.max_length - len(start) - len(end) - 16, 8)  # room for the label word and the tail
    feats = []
    for r in rows:
        if r.label is not None and r.label not in index:
            raise DataError(
                f"{source}:{r.line}: label '{r.label}' was not seen in training; known labels: {', '.join(labels)}"
            )
        before, after = vb.render(cfg.prompt.template, r.text, r.text_pair)
        ids = tokenizer(before, add_special_tokens=False)["input_ids"][-budget:]
        f = {"input_ids": start + ids}
        if masked:  # the text after the word, which a masked LM sees (a causal LM does not)
            f["tail"] = tokenizer(after, add_special_tokens=False)["input_ids"][:8] + end
        if r.label is not None:
            f["labels"] = index[r.label]
        feats.append(f)
    return feats


def collate_words(features: list[dict], words: list[tuple], pad_id: int, mask_id: int | None = None) -> dict:
    """One sequence per (example, label word), right-padded: ``input_ids``/``attention_mask`` (batch * words, seq);
    ``word_pos``/``word_ids``/``word_mask`` (batch * words, longest word): where each word token is predicted and
    which id; ``word_norm`` (batch * words,) 1 or the word's length (mean scoring); ``word_label`` (words,).
    Causal LMs (``mask_id`` None): prompt + word, each word token predicted one position earlier. Masked LMs:
    prompt + one ``mask_id`` per word token + the tail, each word token predicted at its mask."""
    import torch

    seqs = [_sequence(f, w, mask_id) for f in features for _, w, _ in words]
    width, wlen = max(len(s) for s, _ in seqs), max(len(w) for _, w, _ in words)
    ids = torch.full((len(seqs), width), pad_id if pad_id is not None else 0, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    pos, wid, wmask = (torch.zeros(len(seqs), wlen, dtype=torch.long) for _ in range(3))
    for b, (seq, first) in enumerate(seqs):
        w = words[b % len(words)][1]
        ids[b, : len(seq)] = torch.tensor(seq)
        mask[b, : len(seq)] = 1
        pos[b, : len(w)] = torch.arange(first, first + len(w))
        wid[b, : len(w)] = torch.tensor(w)
        wmask[b, : len(w)] = 1
    norms = torch.tensor([len(w) if norm else 1 for _, w, norm in words] * len(features), dtype=torch.float32)
    batch = {"input_ids": ids, "attention_mask": mask, "word_pos": pos, "word_ids": wid, "word_mask": wmask}
    batch.update(word_norm=norms, word_label=torch.tensor([li for li, _, _ in words]))
    if "labels" in features[0]:
        batch["labels"] = torch.tensor([f["labels"] for f in features])
    return batch


def _sequence(feature: dict, word: tuple, mask_id: int | None) -> tuple[list[int], int]:
    """(token ids, position whose logits predict the word's first token) of one (example, word) pair."""
    ctx = list(feature["input_ids"])
    if mask_id is None:
        return ctx + list(word), len(ctx) - 1  # causal: logits at p predict token p + 1
    return ctx + [mask_id] * len(word) + list(feature.get("tail", [])), len(ctx)


def prompt_logits(model, batch: dict) -> torch.Tensor:
    """(batch, labels) label scores from the LM head: per label, log sum over its words of exp(word log-likelihood)."""
    import torch

    ids = batch["input_ids"]
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
    logits = logits[:, -ids.shape[1] :]  # prompt-tuning and p-tuning prepend virtual tokens: keep the input's positions
    rows = torch.arange(ids.shape[0], device=ids.device).unsqueeze(-1)  # (batch * words, 1)
    picked = logits[rows, batch["word_pos"]].float().log_softmax(-1)  # (batch * words, word length, vocab)
    token_lp = picked.gather(-1, batch["word_ids"].unsqueeze(-1)).squeeze(-1) * batch["word_mask"]
    word = token_lp.sum(-1) / batch["word_norm"]  # (batch * words,)
    n_words = batch["word_label"].shape[0]
    word = word.view(-1, n_words)  # (batch, words)
    n_labels = int(batch["word_label"].max()) + 1
    per_label = [word.masked_fill(batch["word_label"] != li, float("-inf")).logsumexp(-1) for li in range(n_labels)]
    return torch.stack(per_label, dim=-1)  # (batch, labels)
