"""What `generate` and `chat` talk to: a run folder (base + method weights) or a plain model name."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from tunelab.data import templates
from tunelab.generation.config import GenerationConfig


@dataclass
class Target:
    model: object
    tokenizer: object
    cfg: GenerationConfig  # the run's generation section, or the defaults for a plain model
    template: str  # chat template (the tokenizer's own, else the configured fallback)
    # raw texts -> what generate takes for them: a run's task wraps them as it learnt (Task.generation_input)
    wrap_texts: Callable[[list[str]], list] = field(default=list)

    def inputs(self, prompts: list) -> list:
        """``prompts`` with every raw text (str) wrapped by ``wrap_texts``; chats (message lists) go as given."""
        wrapped = iter(self.wrap_texts([p for p in prompts if isinstance(p, str)]))
        return [next(wrapped) if isinstance(p, str) else p for p in prompts]


def load(name: str) -> Target:
    """A run folder (has config.yaml) is rebuilt via runs.load_run; anything else is a model for models/load.py."""
    if (Path(name) / "config.yaml").is_file():
        from tunelab import runs
        from tunelab.tasks import TASKS

        task = TASKS[runs.read_config(Path(name)).task.name]
        if not task.generates:
            from tunelab.errors import TunelabError

            raise TunelabError(
                f"{name}: a {task.name} run cannot generate text (use `tunelab predict`); train with task: causal_lm"
            )
        loaded = runs.load_run(name)
        return Target(
            loaded.model,
            loaded.tokenizer,
            loaded.cfg.generation,
            task.prompt_template(loaded),
            partial(task.generation_input, loaded),
        )
    from tunelab.models import load as model_load

    src = model_load.resolve(name)
    tokenizer = model_load.load_tokenizer(src)
    model, _ = model_load.load_model(src, "AutoModelForCausalLM")
    model.eval()
    return Target(model, tokenizer, GenerationConfig(), templates.chat_template(tokenizer))


def with_overrides(cfg: GenerationConfig, values: dict) -> GenerationConfig:
    """A copy of ``cfg`` with the given keys replaced and validated (ConfigError names a bad key or value)."""
    from tunelab import config as config_mod
    from tunelab.errors import ConfigError

    raw = {"generation": {**cfg.model_dump(), **values}}
    try:
        return config_mod.validate(raw, source="generation").generation
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("generation: ", "", 1)) from None
