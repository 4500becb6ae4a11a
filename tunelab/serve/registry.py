"""Model names -> loaded models. Each CLI item is RUN_DIR, NAME=RUN_DIR, or a MODEL (alias, hub id, path).

Runs saved as PEFT adapters (adapter_config.json in run/model) that share a base model, task and
label set are loaded onto ONE copy of the base with peft's ``load_adapter``; a request selects its
adapter by name. Plain LoRA adapters decode in one running batch, each row through its own adapter (peft's
``adapter_names``); other adapter types are activated (``Served.active``) around each forward of their own batch. A generating base
model listed by name beside its adapters (``base=smollm2-135m runs/lora-a``) is served from that same copy
with the adapters disabled. Everything else loads alone.
Requests only ever name these keys, never a path.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tunelab.errors import ConfigError
from tunelab.generation.config import GenerationConfig
from tunelab.serve.engine import Engine

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass
class Served:
    name: str
    run: object  # runs.LoadedRun: config, model, tokenizer, labels (a plain model gets a default causal_lm config)
    gen: GenerationConfig  # the run's generation section: defaults for omitted request fields
    template: str | None = None  # chat template (generating tasks)
    adapter: str | None = None  # peft adapter to activate before running this model
    created: int = field(default_factory=lambda: int(time.time()))
    lock: threading.Lock = field(
        default_factory=threading.Lock
    )  # guards the tokenizer (shared by adapters of one base)
    token_table: object = None  # constrained decoding's vocabulary table (structured.token_table), built on first use
    plain_base: bool = False  # the base model of shared adapters, run with the adapters disabled
    mixes: bool = False  # adapters of one shared base whose rows peft runs in one forward (mixed adapter batches)

    def batch_key(self) -> str:
        """The running batch this model's requests join: the adapters of one shared base (and that base served
        plain) join one when peft can run them mixed; any other model has its own."""
        return f"shared base {id(self.model)}" if self.mixes else self.name

    @property
    def adapter_label(self) -> str:
        """This model's entry in peft's per-row ``adapter_names`` (``__base__``: every adapter off)."""
        return "__base__" if self.plain_base else str(self.adapter)

    def active(self):
        """Context for one forward of this model: its adapter selected, or every adapter off for the plain base."""
        from contextlib import nullcontext

        if self.adapter is not None:  # several adapters share one base: pick this model's
            self.model.set_adapter(self.adapter)
        return self.model.disable_adapter() if self.plain_base else nullcontext()

    @property
    def task(self):
        """The run's Task (predict and parse_inputs answer /v1/predict)."""
        from tunelab.tasks import TASKS

        return TASKS[self.run.cfg.task.name]

    @property
    def engine(self) -> Engine | None:
        """What decodes this model's batches instead of transformers' generate (llama.cpp); None = torch."""
        return self.run.engine

    @property
    def generates(self) -> bool:
        return self.task.generates

    @property
    def model(self):
        return self.run.model

    @property
    def tokenizer(self):
        return self.run.tokenizer


def parse_items(items: list[str]) -> list[tuple[str, str]]:
    """(name, RUN_DIR or MODEL) pairs; NAME=... names explicitly, a run is named after its folder."""
    pairs = []
    for item in items:
        name, eq, target = item.partition("=")
        if not eq:
            target = item
            name = Path(item.rstrip("/")).name if Path(item).exists() else item
        if not NAME_RE.match(name):
            raise ConfigError(
                f"serve: model name '{name}' must be 1-128 letters, digits, '.', '_', ':' or '-'; name it with NAME={target}"
            )
        pairs.append((name, target))
    names = [n for n, _ in pairs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"serve: model name(s) {', '.join(dupes)} given twice; name them apart with NAME=RUN_DIR")
    if not pairs:
        raise ConfigError("serve: give at least one RUN_DIR or MODEL")
    return pairs


def load_all(items: list[str], log: Callable[[str], None], backend: str = "auto") -> dict[str, Served]:
    """Load every item; adapter runs on a common base share one base model. ``backend`` applies to every run folder."""
    from tunelab import runs

    served: dict[str, Served] = {}
    groups: dict[tuple, list[tuple[str, Path]]] = {}
    plain: dict[str, str] = {}
    for name, target in parse_items(items):
        run = Path(target)
        if (run / "config.yaml").is_file():
            runs.check_run_dir(run)
            if _members(run):  # a multitask run: one served model per member head (NAME:MEMBER), one loaded copy
                served.update(_load_members(name, run, backend))
                log(f"serve: loaded {', '.join(n for n in served if n.startswith(name + ':'))}")
                continue
            if (run / "model" / "adapter_config.json").is_file() and backend in ("auto", "torch"):
                cfg = runs.read_config(run)
                labels = runs.read_labels(run)
                key = (cfg.task.name, cfg.model.name, cfg.model.gguf_file, cfg.model.revision, tuple(labels or ()))
                groups.setdefault(key, []).append((name, run))
                continue
            served[name] = _load_run(name, run, backend)
        else:
            if backend not in ("auto", "torch"):
                raise ConfigError(
                    f"serve: --backend {backend} serves run folders (tunelab export RUN OUT --format gguf/onnx); "
                    f"'{target}' is a model name"
                )
            plain[name] = target  # loaded below, unless it is the base of adapters listed too
            continue
        log(f"serve: loaded {name}")
    bases = {target: name for name, target in plain.items()}
    shared = {key[1] for key in groups if key[0] == "causal_lm" and key[2] is None and key[1] in bases}
    for name, target in plain.items():
        if target not in shared:
            served[name] = _load_model(name, target)
            log(f"serve: loaded {name}")
    for key, members in groups.items():
        base = bases[key[1]] if key[0] == "causal_lm" and key[2] is None and key[1] in shared else None
        for s in _load_adapters(members, shared=base is not None):
            served[s.name] = s
            log(
                f"serve: loaded {s.name}"
                + (f" (adapter on a shared base, {len(members)} adapters)" if len(members) > 1 or base else "")
            )
        if base is not None:  # the base model listed by name: the same copy, adapters disabled
            first = served[members[0][0]]
            served[base] = _plain_base(base, first)
            log(f"serve: {base} shares the base model of {', '.join(n for n, _ in members)} (no second copy)")
    names = [n for n, _ in parse_items(items)]
    return {n: s for item in names for n, s in served.items() if n == item or n.startswith(item + ":")}


def _members(run: Path) -> list[str]:
    """Member task names of a multitask run folder ([] for a single task)."""
    from tunelab import runs
    from tunelab.tasks import TASKS

    cfg = runs.read_config(run)
    return TASKS[cfg.task.name].members(cfg)


def _load_members(name: str, run: Path, backend: str) -> dict[str, Served]:
    """Every member head of a multitask run as NAME:MEMBER, sharing the loaded model (and one tokenizer lock)."""
    from tunelab import runs

    loaded = runs.load_run(run, backend)
    out, lock = {}, threading.Lock()
    for member in loaded.task.members(loaded.cfg):
        served = _run_served(f"{name}:{member}", run, loaded.task.member_run(loaded, member))
        served.lock = lock
        out[served.name] = served
    return out


def _plain_base(name: str, adapter: Served) -> Served:
    from tunelab import config as config_mod
    from tunelab import runs
    from tunelab.data import templates

    cfg = config_mod.validate({"task": "causal_lm", "model": {"name": adapter.run.cfg.model.name}}, source=name)
    loaded = runs.LoadedRun(cfg, adapter.model, adapter.tokenizer, None, [])
    s = Served(name, loaded, cfg.generation, templates.chat_template(adapter.tokenizer), plain_base=True)
    s.lock, s.mixes = adapter.lock, adapter.mixes
    return s


def _run_served(name: str, run: Path, loaded, adapter: str | None = None) -> Served:
    return Served(
        name, loaded, loaded.cfg.generation, loaded.task.prompt_template(loaded), adapter, int(run.stat().st_mtime)
    )


def _load_run(name: str, run: Path, backend: str = "auto") -> Served:
    from tunelab import runs

    return _run_served(name, run, runs.load_run(run, backend))


def _load_model(name: str, target: str) -> Served:
    from tunelab import config as config_mod
    from tunelab import runs
    from tunelab.generation import target as target_mod

    tgt = target_mod.load(target)
    cfg = config_mod.validate(
        {"task": "causal_lm", "model": {"name": target}, "generation": tgt.cfg.model_dump()}, source=target
    )
    return Served(name, runs.LoadedRun(cfg, tgt.model, tgt.tokenizer, None, []), tgt.cfg, tgt.template)


def _load_adapters(members: list[tuple[str, Path]], shared: bool = False) -> list[Served]:
    """One base model, one peft adapter per run (adapter name = served name); ``shared``: keep it a PeftModel
    even for one run (its base is served too)."""
    from peft import PeftModel

    from tunelab import runs

    if len(members) == 1 and not shared:
        return [_load_run(*members[0])]
    first_name, first_run = members[0]
    cfg, labels = runs.read_config(first_run), runs.read_labels(first_run)
    tokenizer, base, head = runs.build_base(cfg, labels)
    model = PeftModel.from_pretrained(base, str(first_run / "model"), adapter_name=first_name)
    for name, run in members[1:]:
        model.load_adapter(str(run / "model"), adapter_name=name)
    model.eval()
    lock, mixes = threading.Lock(), _mixable(model)
    out = []
    for name, run in members:
        from tunelab.evaluation.calibration import stored_temperature

        loaded = runs.LoadedRun(runs.read_config(run), model, tokenizer, labels, head, stored_temperature(run))
        loaded.task_state = runs.read_task_state(run)
        s = _run_served(name, run, loaded, adapter=name)
        s.lock, s.mixes = lock, mixes
        out.append(s)
    return out


def _mixable(model) -> bool:
    """Whether peft runs rows of different adapters of ``model`` in one forward (its ``adapter_names``): plain LoRA
    adapters (rsLoRA, PiSSA/OLoRA initialisations included), not DoRA nor other adapter types."""
    from peft import PeftType

    return all(c.peft_type == PeftType.LORA and not c.use_dora for c in model.peft_config.values())
