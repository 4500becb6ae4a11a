"""Label scores of inputs under a prompt: the part shared by in-context learning and prompt-based fine-tuning.

A ``Scorer`` holds the LM, its tokenizer, the tokenised verbalizer and the ``prompt:`` section; ``score`` turns
inputs that follow one shared prefix (instruction and demonstrations) into an (inputs, labels) tensor of label
scores (log of the summed word probabilities, see verbalizer.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.errors import ConfigError
from tunelab.prompting import verbalizer as vb

if TYPE_CHECKING:
    import torch

CAUSAL, MASKED = "causal", "masked"


@dataclass
class Scorer:
    """An LM scoring label words: ``lm`` is causal or masked; ``prompt`` the PromptConfig."""

    model: Any
    tokenizer: Any
    verbalizer: vb.Verbalizer
    prompt: Any
    lm: str
    batch_size: int = 16


def lm_kind(choice: str, architectures: list[str] | None) -> str:
    """causal or masked: ``prompt.lm`` when set, else from the model config's architecture names."""
    if choice != "auto":
        return choice
    names = architectures or []
    if any(n.endswith("ForMaskedLM") for n in names):
        return MASKED
    if any(n.endswith(("ForCausalLM", "LMHeadModel")) for n in names):
        return CAUSAL
    raise ConfigError(
        f"prompt.lm: cannot tell from the model's architectures ({', '.join(names) or 'none'}) whether it is a "
        "causal or a masked LM; set prompt.lm to causal or masked"
    )


def auto_class(kind: str) -> str:
    """The transformers Auto class an LM of this kind loads with."""
    return "AutoModelForMaskedLM" if kind == MASKED else "AutoModelForCausalLM"


def prefix_text(prompt, demonstrations: list[str]) -> str:
    """Instruction and demonstrations, each followed by the separator (empty for zero-shot without instruction)."""
    parts = ([prompt.instruction] if prompt.instruction else []) + demonstrations
    return "".join(p + prompt.separator for p in parts)


def score(scorer: Scorer, prefix: str, inputs: list[tuple[str, str | None]]) -> torch.Tensor:
    """(inputs, labels) label scores of ``(text, text_pair)`` inputs rendered with the template after ``prefix``."""
    p = scorer.prompt
    rendered = [vb.render(p.template, text, pair) for text, pair in inputs]
    words = [(li, w) for li, ws in enumerate(scorer.verbalizer.words) for w in ws]
    if scorer.lm == MASKED:
        items = [(prefix + before, after, w) for before, after in rendered for _, w in words]
        token_lp = vb.cloze_logprobs(scorer.model, scorer.tokenizer, items, scorer.batch_size)
    else:
        tok = scorer.tokenizer
        start = vb.special_start(tok) + tok(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        start = start or vb.special_start(tok) or [tok.eos_token_id if tok.eos_token_id is not None else 0]
        if "{text}" in p.template.partition("{mask}")[2]:
            raise ConfigError("prompt.template: a causal LM reads left to right; put {mask} after {text}")
        items = [
            (tok(before, add_special_tokens=False)["input_ids"], list(w)) for before, _ in rendered for _, w in words
        ]
        _check_length(scorer.model, len(start) + max(len(c) + len(w) for c, w in items))
        token_lp = vb.continuation_logprobs(scorer.model, start, items, scorer.batch_size)
    return _label_scores(token_lp, words, len(inputs), len(scorer.verbalizer.labels), p.scoring)


def _check_length(model, tokens: int) -> None:
    """A clear error when a prompt (demonstrations + input + word) is longer than the model's positions."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and tokens > limit:
        raise ConfigError(
            f"icl.shots: a prompt of {tokens} tokens (demonstrations, input and label word) is longer than the "
            f"model's {limit} positions; use fewer shots or shorter texts"
        )


def _label_scores(token_lp: list[list[float]], words, n_inputs: int, n_labels: int, scoring: str):
    import torch

    out = torch.empty(n_inputs, n_labels)
    per = len(words)
    for i in range(n_inputs):
        grouped: list[list[float]] = [[] for _ in range(n_labels)]
        for j, (label, _) in enumerate(words):
            grouped[label].append(vb.word_score(token_lp[i * per + j], scoring))
        out[i] = torch.tensor(vb.label_scores(grouped))
    return out
