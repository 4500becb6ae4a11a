"""The ``prompt:`` and ``icl:`` config sections (no torch here: configs load without it)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from tunelab.schema import Strict

SLOTS = ("{text}", "{text_pair}", "{mask}")
_SLOT = re.compile(r"\{[^{}]*\}")


class PromptConfig(Strict):
    """A task recast as filling a template; the label is read from the words the LM predicts at ``{mask}``."""

    template: str = Field(
        "{text} It was {mask}.",
        description="Prompt with slots {text} (required), {text_pair} and {mask} (where a label word goes; "
        "absent = at the end). Causal LMs score the word after everything before {mask}.",
    )
    verbalizer: dict[str, list[str]] | None = Field(
        None,
        description="Label -> word(s) the LM should predict for it, e.g. {0: [terrible], 1: [great]}; a label's "
        "score is the log of the summed probability of its words. Required by `tunelab icl` and task prompt_classification.",
    )
    scoring: Literal["sum", "mean"] = Field(
        "sum",
        description="A word's score from its tokens' log-likelihoods: sum, or mean (length-normalised, for "
        "multi-token words of different lengths).",
    )
    word_prefix: str = Field(
        " ", description="Text put before each label word when it is tokenised (a space: the word follows the prompt)."
    )
    instruction: str = Field("", description="Text before the demonstrations and the input (a task description).")
    separator: str = Field("\n\n", description="Text after the instruction and after each demonstration.")
    lm: Literal["auto", "causal", "masked"] = Field(
        "auto",
        description="How words are scored: causal (log-likelihood after the prompt) or masked (PET cloze at "
        "[MASK] tokens); auto = from the model's architecture (`tunelab icl`; causal for task prompt_classification).",
    )

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{text}" not in value:
            raise ValueError(f"the template {value!r} has no {{text}} slot; the input must go somewhere")
        unknown = [s for s in _SLOT.findall(value) if s not in SLOTS]
        if unknown:
            raise ValueError(f"unknown slot {unknown[0]} in the template; slots are {', '.join(SLOTS)}")
        for slot in SLOTS:
            if value.count(slot) > 1:
                raise ValueError(f"the template has {slot} {value.count(slot)} times; use it once")
        return value

    @field_validator("verbalizer", mode="before")
    @classmethod
    def _words(cls, value):
        if value is None:
            return None
        if not isinstance(value, dict) or not value:
            raise ValueError("give a mapping label -> word or list of words, e.g. {0: terrible, 1: great}")
        out = {}
        for label, words in value.items():
            words = [words] if isinstance(words, str) else words
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise ValueError(f"label {label!r}: give one or more non-empty words")
            out[str(label)] = words
        return out


class ICLConfig(Strict):
    """In-context learning (`tunelab icl`): k demonstrations from the training file in the prompt, no training."""

    shots: int = Field(8, ge=0, le=256, description="Demonstrations per prompt (k); 0 = zero-shot.")
    selection: list[Literal["random", "balanced", "nearest"]] = Field(
        ["random", "balanced", "nearest"],
        min_length=1,
        description="Strategies to run: random, balanced (same number per class), nearest (most similar "
        "training texts in the embedding model's space, per input).",
    )
    order: Literal["random", "similarity"] = Field(
        "random", description="Demonstration order: random, or by similarity to the input (most similar last)."
    )
    calibrate: list[bool] = Field(
        [False, True],
        min_length=1,
        description="Contextual calibration (Zhao et al. 2021) off and/or on: probabilities divided by those of "
        "content-free inputs in the same prompt.",
    )
    content_free: list[str] = Field(
        ["N/A", "", "[MASK]"], min_length=1, description="Content-free inputs whose mean prediction is divided out."
    )
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Seeds of demonstration sampling (mean and std).")
    pool_per_class: int | None = Field(
        None,
        ge=1,
        description="Draw this many training rows per class (per seed) as the labelled pool demonstrations come "
        "from (few-shot with k labelled examples); null = the whole training file.",
    )
    finetune: list[Literal["head", "prompt"]] = Field(
        [],
        description="Also fine-tune on each seed's pool (needs pool_per_class) with the config's method and train "
        "settings: head (new classification head) and/or prompt (template + verbalizer as the head), for the table.",
    )
    embedding_model: str = Field(
        "minilm-l6", description="Sentence-embedding model for nearest selection and similarity order."
    )
    batch_size: int = Field(16, ge=1, description="Sequences per forward pass.")
