"""Templates and verbalizers: render prompts, tokenise label words, and score labels with a causal or masked LM.

A label's score is ``log sum_w p(w | prompt)`` over its words ``w``; a word's log-likelihood is the sum of its
tokens' log-probabilities, or their mean (``scoring: mean``). Causal LMs score the word's tokens after everything
before ``{mask}`` (the text after it is not seen); masked LMs (PET cloze) put as many mask tokens as the word has
tokens at ``{mask}`` and sum the log-probabilities of the word's tokens there, predicted in one pass.
The prompt is tokenised in pieces (demonstrations, input, word) so a shared prefix is encoded once.
torch is imported inside functions.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch


def _no_grad(fn):
    """Run ``fn`` under torch.no_grad (scores are floats; nothing is trained through them)."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapped


def render(template: str, text: str, text_pair: str | None = None) -> tuple[str, str]:
    """(text before the label word, text after it) of ``template`` filled with an input (plain replacement, so
    braces in the input are kept as they are). Spaces before ``{mask}`` are dropped: ``prompt.word_prefix`` puts
    the space in front of the word, so it tokenises as a word does inside a sentence."""
    if "{text_pair}" in template and text_pair is None:
        raise DataError("the template has a {text_pair} slot but the input has no second text (data.text_pair_column)")
    before, mark, after = template.partition("{mask}")
    fill = {"{text}": text.strip(), "{text_pair}": (text_pair or "").strip()}
    return _fill(before, fill).rstrip(), _fill(after, fill) if mark else ""


def _fill(part: str, fill: dict[str, str]) -> str:
    for slot, value in fill.items():
        part = part.replace(slot, value)
    return part


def demonstration(template: str, text: str, text_pair: str | None, word: str, word_prefix: str) -> str:
    """A demonstration: the template filled with an input and its label's first word."""
    before, after = render(template, text, text_pair)
    return f"{before}{word_prefix}{word}{after}"


@dataclass(frozen=True)
class Verbalizer:
    """Label words as token ids: ``words[i]`` lists the token-id sequences of label ``labels[i]``'s words."""

    labels: tuple[str, ...]
    words: tuple[tuple[tuple[int, ...], ...], ...]
    first_words: tuple[str, ...]  # the word demonstrations show for each label


def build_verbalizer(mapping: dict[str, list[str]], labels: list[str], tokenizer, word_prefix: str) -> Verbalizer:
    """Tokenise every label word; errors name a label without words, a word without tokens, and unknown labels."""
    missing = [label for label in labels if label not in mapping]
    if missing:
        raise ConfigError(
            f"prompt.verbalizer: no words for label(s) {', '.join(map(repr, missing))}; it maps "
            f"{', '.join(map(repr, mapping))} (every label of the data needs words)"
        )
    extra = [label for label in mapping if label not in labels]
    if extra:
        raise ConfigError(
            f"prompt.verbalizer: label(s) {', '.join(map(repr, extra))} do not occur in the data; labels are "
            f"{', '.join(map(repr, labels))}"
        )
    words = []
    for label in labels:
        ids = []
        for word in mapping[label]:
            tokens = tuple(tokenizer(word_prefix + word, add_special_tokens=False)["input_ids"])
            if not tokens:
                raise ConfigError(f"prompt.verbalizer: label {label!r}: the word {word!r} tokenises to nothing")
            ids.append(tokens)
        words.append(tuple(ids))
    return Verbalizer(tuple(labels), tuple(words), tuple(mapping[label][0] for label in labels))


def word_score(token_logprobs: list[float], scoring: str) -> float:
    """A word's log-likelihood from its tokens' log-probabilities: their sum, or mean (length-normalised)."""
    total = sum(token_logprobs)
    return total / len(token_logprobs) if scoring == "mean" else total


def label_scores(word_scores: list[list[float]]) -> list[float]:
    """Per label, ``log sum_w exp(score_w)`` over its words' scores."""
    out = []
    for scores in word_scores:
        top = max(scores)
        out.append(top + math.log(sum(math.exp(s - top) for s in scores)))
    return out


def special_start(tokenizer) -> list[int]:
    """The tokens the tokenizer puts before a text (BOS for Llama-style models, [CLS] for BERT; none for SmolLM2)."""
    return special_tokens(tokenizer)[0]


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """(tokens before, tokens after) that the tokenizer wraps a single text in."""
    with_special = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for i in range(len(with_special)):
        if with_special[i : i + len(plain)] == plain:
            return list(with_special[:i]), list(with_special[i + len(plain) :])
    return [], []


# ---------------------------------------------------------------- causal LMs


@_no_grad
def continuation_logprobs(model, prefix: list[int], items: list[tuple[list[int], list[int]]], batch_size: int):
    """Per item ``(context, target)``, the log-probabilities of ``target``'s tokens after ``prefix + context``.

    ``prefix`` (shared by every item: demonstrations) runs once; its key/value cache is copied for each batch.
    Returns a list of lists of floats (one per target token).
    """
    import torch

    device = next(model.parameters()).device
    cache, last = None, None
    if prefix:
        out = model(input_ids=torch.tensor([prefix], device=device), use_cache=True)
        cache, last = out.cache, out.logits[0, -1].float().log_softmax(-1)  # (vocab,)
    results = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        results.extend(_score_chunk(model, chunk, (cache, last, len(prefix)), device))
    return results


def _score_chunk(model, chunk, prefix_state, device) -> list[list[float]]:
    import torch

    cache, last, n_prefix = prefix_state
    seqs = [list(ctx) + list(tgt) for ctx, tgt in chunk]
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), n_prefix + width, dtype=torch.long)
    mask[:, :n_prefix] = 1
    for b, s in enumerate(seqs):  # right padding: positions of real tokens follow the prefix
        ids[b, : len(s)] = torch.tensor(s)
        mask[b, n_prefix : n_prefix + len(s)] = 1
    kwargs = {}
    if cache is not None:
        past = copy.deepcopy(cache)
        past.batch_repeat_interleave(len(seqs))
        kwargs = {"cache": past, "use_cache": True}
    logp = model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs).logits.float().log_softmax(-1)
    out = []
    for b, (ctx, tgt) in enumerate(chunk):  # logp[b, p] predicts token p + 1
        scores = []
        for j, token in enumerate(tgt):
            pos = len(ctx) + j - 1
            row = last if pos < 0 else logp[b, pos]
            scores.append(float(row[token]))
        out.append(scores)
    return out


# ---------------------------------------------------------------- masked LMs (PET cloze)


@_no_grad
def cloze_logprobs(model, tokenizer, items: list[tuple[str, str, tuple[int, ...]]], batch_size: int):
    """Per item ``(text before the word, text after it, word tokens)``, the log-probabilities of the word's tokens
    at as many mask tokens placed between the two texts (all predicted in one pass)."""
    import torch

    if tokenizer.mask_token_id is None:
        raise ConfigError("prompt.lm: masked scoring needs a tokenizer with a mask token; this one has none")
    device = next(model.parameters()).device
    first, last = special_tokens(tokenizer)
    limit = min(getattr(model.config, "max_position_embeddings", 512), tokenizer.model_max_length)
    out = []
    for begin in range(0, len(items), batch_size):
        chunk = items[begin : begin + batch_size]
        seqs, spans = [], []
        for before, after, word in chunk:
            tail = tokenizer(after, add_special_tokens=False)["input_ids"]
            room = limit - len(first) - len(last) - len(word) - len(tail)
            head = tokenizer(before, add_special_tokens=False)["input_ids"][
                -max(room, 1) :
            ]  # keep the end near the mask
            seqs.append(first + head + [tokenizer.mask_token_id] * len(word) + tail + last)
            spans.append(len(first) + len(head))  # the word's first mask token
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros(len(seqs), width, dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = torch.tensor(s)
            mask[b, : len(s)] = 1
        logp = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().log_softmax(-1)
        for b, (_, _, word) in enumerate(chunk):
            out.append([float(logp[b, spans[b] + j, t]) for j, t in enumerate(word)])
    return out


def logits_from_scores(scores: list[list[float]]) -> torch.Tensor:
    """(inputs, labels) tensor of label scores."""
    import torch

    return torch.tensor(scores, dtype=torch.float32)
