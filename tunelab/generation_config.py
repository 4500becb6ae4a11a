"""The ``generation:`` config section; keys are spelled like transformers' generate arguments.

Kept outside the ``tunelab.generation`` package (whose ``__init__`` imports torch) so that ``tunelab.config``
loads without torch; ``tunelab.generation.config`` re-exports it."""

from __future__ import annotations

from pydantic import Field

from tunelab.schema import Strict


class GenerationConfig(Strict):
    max_new_tokens: int = Field(256, ge=1, le=32768, description="Most tokens to generate per prompt.")
    do_sample: bool = Field(
        False, description="Sample from the distribution (true) or decode greedily / by beam search (false)."
    )
    num_beams: int = Field(1, ge=1, le=64, description="Beam search width; 1 = no beam search.")
    temperature: float = Field(
        1.0, gt=0, le=100, description="Divide logits by this before sampling (<1 sharper, >1 flatter)."
    )
    top_k: int = Field(50, ge=0, description="Sample only among the k most likely tokens; 0 disables.")
    top_p: float = Field(
        1.0, gt=0, le=1, description="Sample only among the smallest set of tokens whose probability reaches p."
    )
    repetition_penalty: float = Field(
        1.0, gt=0, description="Divide the logits of tokens already present by this (>1 discourages repeats)."
    )
    no_repeat_ngram_size: int = Field(0, ge=0, description="Never repeat an n-gram of this size; 0 disables.")
    length_penalty: float = Field(
        1.0, description="Beam search: exponent on length when scoring finished beams (>0 favours longer)."
    )
    early_stopping: bool = Field(False, description="Beam search: stop once num_beams finished candidates exist.")
    stop: list[str] = Field(
        default_factory=list,
        description="Stop when the output contains any of these strings (removed from the output).",
    )
    seed: int | None = Field(None, description="Seed for sampling; null = not reseeded.")
    context_window: int | None = Field(
        None, ge=16, description="Tokens of context (prompt + new tokens); null = the model's max_position_embeddings."
    )
    batch_size: int = Field(
        8, ge=1, le=1024, description="Prompts per generate call (left-padded; encoder-decoder inputs right-padded)."
    )

    def hf_kwargs(self) -> dict:
        """Arguments for transformers' ``generate`` (sampling knobs only when sampling)."""
        kw = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": self.num_beams,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "use_cache": True,
        }
        if self.do_sample:
            kw.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        else:  # keep transformers from warning about (or applying) sampling defaults from the model's generation_config
            kw.update(temperature=None, top_k=None, top_p=None)
        if self.num_beams > 1:
            kw.update(length_penalty=self.length_penalty, early_stopping=self.early_stopping)
        return kw
