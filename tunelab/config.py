"""Typed, strict run configuration.

One place for every default: the pydantic models below (and each task's and method's ``Config``).
``load(path, overrides)`` reads YAML, applies ``a.b=value`` overrides and validates; every problem
becomes a ``ConfigError`` naming the key path (and, for a typo, the closest valid key). ``task:`` and
``method:`` are tagged unions: ``task: causal_lm`` is short for ``task: {name: causal_lm}``.
Importing this module does not import torch.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from tunelab.config_upgrade import MOVED, move, moved_keys
from tunelab.errors import ConfigError
from tunelab.evaluation.config import AnalysisConfig, EvalConfig, split_entry
from tunelab.generation_config import GenerationConfig
from tunelab.methods import METHODS
from tunelab.prompting.config import ICLConfig, PromptConfig
from tunelab.schema import Strict
from tunelab.tasks import TASKS
from tunelab.training.speed import Config as SpeedConfig
from tunelab.training.trackers import Config as TrackingConfig

KEEP_CHECKPOINTS = ("best+last", "last", "none", "all")


class ModelConfig(Strict):
    name: str = Field(
        "minilm-l6",
        description="Hub id, local HF directory, .gguf file, packaged alias (minilm-l6, smollm2-135m), or a tunelab run "
        "folder trained with method full (or merged): step 2 of a two-step recipe starts from step 1's weights.",
    )
    gguf_file: str | None = Field(
        None, description="GGUF file name inside `name` when `name` is a directory holding one."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    max_length: int = Field(
        256,
        ge=8,
        le=32768,
        description="Longest input in tokens; longer texts are truncated (classification) or windowed (NER).",
    )
    dropout: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Set every dropout probability of the model to this value (0 turns dropout off); null keeps the model's own.",
    )
    layers: list[int] | None = Field(
        None,
        description="Keep only these transformer layers of the model (0-based, increasing), e.g. [0, 2, 4]: a smaller "
        "student initialised from the model's own layers (DistilBERT-style); null keeps every layer.",
    )


class DataConfig(Strict):
    train: str = Field(
        "rotten-tomatoes",
        description="Training file (csv, tsv, json, jsonl, conll, parquet, arrow), a datasets save_to_disk folder, a hub "
        "dataset hf://datasets/OWNER/NAME[/CONFIG][@REVISION][:SPLIT], or a packaged dataset name (rotten-tomatoes).",
    )
    dev: str | None = Field(None, description="Dev file; if absent a stratified, seeded split is carved out of train.")
    test: str | None = Field(
        None, description="Optional held-out test file, evaluated once at the end with the best checkpoint."
    )
    format: Literal["auto", "csv", "tsv", "json", "jsonl", "conll", "text", "parquet", "arrow"] = Field(
        "auto",
        description="File format; auto picks it from the extension (.txt = text: one text per line, for predict; "
        ".parquet/.pq; .arrow/.feather). datasets save_to_disk folders and hf:// ids need no format.",
    )
    delimiter: str | None = Field(
        None,
        description="Field separator of csv/tsv files, one character (e.g. ';', '|', '@', or tab); null = ',' for csv, tab for tsv.",
    )
    encoding: str = Field(
        "utf-8",
        description="Text encoding of the data files (e.g. latin-1, cp1252); utf-8 also accepts a byte-order mark.",
    )
    text_column: str | int = Field(
        "text", description="Column (name, or 0-based position for headerless files) holding the text."
    )
    text_pair_column: str | int | None = Field(None, description="Second text column for sentence-pair tasks.")
    label_column: str | int = Field("label", description="Column holding the label (string or integer).")
    has_header: bool | Literal["auto"] = Field(
        "auto", description="Whether a csv/tsv file starts with a header row; auto detects it from the column names."
    )
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="raise: stop at the first bad row; skip: drop bad rows and report which lines."
    )
    min_label_rows: int = Field(
        2,
        ge=1,
        description="Classification: a training label found in fewer rows than this is reported with its lines (see label_check).",
    )
    label_check: Literal["error", "warn", "off"] = Field(
        "error",
        description="Classification: what a rare label, or a label whose type (number or word) differs from the others, does to training.",
    )
    dev_fraction: float = Field(
        0.1, gt=0, lt=0.9, description="Fraction of train carved out as dev when no dev file is given."
    )
    max_train_rows: int | None = Field(None, ge=1, description="Use only the first N training rows (after reading).")
    max_dev_rows: int | None = Field(None, ge=1, description="Use only the first N dev rows.")

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, v: str | None) -> str | None:
        if v in ("\\t", "tab", "TAB"):  # a tab is hard to type on a command line
            return "\t"
        if v is not None and len(v) != 1:
            raise ValueError("expected one character (or tab)")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError("unknown text encoding; e.g. utf-8, latin-1, cp1252, utf-16") from None
        return v


class TrainConfig(Strict):
    epochs: float = Field(3.0, gt=0, le=1000, description="Passes over the training data (may be fractional).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(32, ge=1, le=4096, description="Examples per optimizer step (micro-batch x grad_accum).")
    grad_accum: int = Field(
        1,
        ge=1,
        le=1024,
        description="Split each batch into this many micro-batches; the loss equals the full-batch loss.",
    )
    lr: float = Field(5e-5, gt=0, le=1.0, description="Peak learning rate.")
    weight_decay: float = Field(0.01, ge=0, le=1.0, description="AdamW weight decay (not applied to biases and norms).")
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="Fraction of steps with linear warmup.")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="Learning-rate decay after warmup.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip gradients to this global norm; null disables.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto: bf16 autocast only where this machine runs bf16 matmuls natively and measurably faster than fp32 "
        "(see `tunelab doctor`), else fp32; bf16: autocast with fp32 master weights; fp32: plain fp32. "
        "The saved config records what auto picked.",
    )
    eval_every: int | None = Field(
        None, ge=1, description="Evaluate every N optimizer steps; null = at the end of each epoch."
    )
    log_every: int = Field(10, ge=1, description="Write a metrics.jsonl line every N optimizer steps.")
    save_every: int | None = Field(
        None,
        ge=1,
        description="Write a resumable checkpoint every N steps (and always at each evaluation, after the last step and on Ctrl-C/SIGTERM).",
    )
    keep_checkpoints: Literal[KEEP_CHECKPOINTS] = Field(  # type: ignore[valid-type]
        "best+last",
        description="What a finished run keeps: best+last (best weights and the last step's weights, no optimizer state), "
        "last (last step's weights), none (only model/), all (every checkpoint with optimizer state; "
        "training then keeps every save_every checkpoint). `tunelab clean RUN` prunes later.",
    )
    metric: str | None = Field(
        None,
        description="Dev metric that picks the best checkpoint and drives early stopping; null = the task's first metric "
        "(classification: accuracy, token_classification: f1, causal_lm: loss, multi_label: micro_f1, regression: mse); "
        "its direction is the task's declaration. May name a custom metric of eval.metrics.",
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many evaluations without improvement of `metric`."
    )
    seed: int = Field(42, description="Seed for weights init, data order, dropout and the dev split.")
    threads: int | None = Field(None, ge=1, le=512, description="torch CPU threads; null leaves torch's default.")
    llrd: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Layer-wise lr decay: layer i from the top gets lr * llrd**i (head at the peak lr); null = off. Any method.",
    )
    gradual_unfreeze_every: Annotated[int, Field(ge=1)] | Literal["epoch"] | None = Field(
        None,
        description="Gradual unfreezing: start with the top layer group, unfreeze one more every N steps (or 'epoch'); null = off. Any method.",
    )
    length_grouping: bool = Field(
        True, description="Batch examples of similar length together (dynamic padding either way)."
    )
    class_weights: Literal["balanced"] | dict[str | int, float] | None = Field(
        None,
        description="Weigh each class in the loss: balanced = n_rows / (n_classes * rows of the class), from the "
        "training rows; or {label: weight} (unlisted labels weigh 1); null = equal. Classification.",
    )
    focal_gamma: float | None = Field(
        None,
        ge=0,
        le=10,
        description="Focal loss: scale each row's cross-entropy by (1 - p_true)^gamma, so easy rows count less "
        "(2 is usual); null = plain cross-entropy. Combines with class_weights. Classification.",
    )
    sampler: Literal["length", "balanced"] = Field(
        "length",
        description="Which rows form each batch: length = a seeded shuffle (grouped by length, see length_grouping); "
        "balanced = every class equally likely (rows drawn with replacement, seeded per epoch; the epoch keeps its "
        "number of batches). balanced needs a task that gives classes (classification).",
    )

    @field_validator("class_weights")
    @classmethod
    def _positive_weights(cls, v):
        if isinstance(v, dict) and (not v or any(w <= 0 for w in v.values())):
            raise ValueError("expected 'balanced' or a mapping {label: weight} of positive weights")
        return {str(k): w for k, w in v.items()} if isinstance(v, dict) else v  # labels are strings (1 -> "1")


MethodConfig = Annotated[
    Union[tuple(m.Config for m in METHODS.values())],  # type: ignore[valid-type]
    Field(discriminator="name"),
]
TaskConfig = Annotated[
    Union[tuple(t.Config for t in TASKS.values())],  # type: ignore[valid-type]
    Field(discriminator="name"),
]


class RunConfig(Strict):
    task: TaskConfig = Field(
        default_factory=lambda: TASKS["classification"].Config(), description="What the model learns and its options."
    )
    output_dir: str = Field("runs/run", description="Run folder; created if absent, resumed if it holds a checkpoint.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Pretrained model to start from.")
    data: DataConfig = Field(default_factory=DataConfig, description="Training and evaluation data.")
    method: MethodConfig = Field(
        default_factory=lambda: METHODS["full"].Config(), description="Fine-tuning method and its options."
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimisation and evaluation schedule.")
    generation: GenerationConfig = Field(
        default_factory=GenerationConfig, description="Decoding for generate/chat (and dev generations)."
    )
    speed: SpeedConfig = Field(
        default_factory=SpeedConfig,
        description="Speed and memory levers (bf16 frozen weights, chunked LM loss, compile, cache).",
    )
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig,
        description="Experiment trackers (TensorBoard, MLflow, Trackio) besides metrics.jsonl.",
    )
    eval: EvalConfig = Field(
        default_factory=EvalConfig, description="Metrics of your own, computed with the task's during training."
    )
    analysis: AnalysisConfig = Field(
        default_factory=AnalysisConfig, description="Calibration and error analysis written at the end of training."
    )
    prompt: PromptConfig = Field(
        default_factory=PromptConfig,
        description="Template and verbalizer for prompt-based classification (`tunelab icl`, task prompt_classification).",
    )
    icl: ICLConfig = Field(default_factory=ICLConfig, description="In-context learning settings for `tunelab icl`.")

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        if self.train.batch_size % self.train.grad_accum:
            raise ValueError(
                f"train.batch_size ({self.train.batch_size}) must be a multiple of train.grad_accum ({self.train.grad_accum})"
            )
        task = TASKS[self.task.name]
        custom = [split_entry(e)[1] for e in self.eval.metrics]
        try:
            if self.train.metric not in custom:
                task.metric(self.train.metric)
        except ValueError as exc:
            more = f" (or a custom metric of eval.metrics: {', '.join(custom)})" if custom else ""
            raise ValueError(f"train.metric: {exc}{more}") from None
        given = {"class_weights": self.train.class_weights, "focal_gamma": self.train.focal_gamma}
        wanted = [k for k, v in given.items() if v is not None]
        wanted += ["sampler"] if self.train.sampler == "balanced" else []
        if wanted and not task.balances:
            able = ", ".join(n for n, t in TASKS.items() if t.balances)
            raise ValueError(
                f"train.{wanted[0]}: task {task.name} does not weigh or balance classes (tasks that do: {able})"
            )
        task.check(self)
        return self


# ---------------------------------------------------------------- loading


def load(path: str | Path | None = None, overrides: list[str] | None = None, upgrade: bool = False) -> RunConfig:
    """Read a YAML config (optional), apply ``a.b=value`` overrides and validate.

    Keys that moved in tunelab 0.2 are an error naming the new key; ``upgrade=True`` moves them instead
    (for config.yaml files of run folders written by earlier versions).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    for item in overrides or []:
        _apply_override(raw, item)
    return validate(raw, source=str(path) if path else "overrides", upgrade=upgrade)


def validate(raw: dict[str, Any], source: str = "config", upgrade: bool = False) -> RunConfig:
    """Validate a plain dict into a RunConfig, turning pydantic errors into one readable ConfigError."""
    for recipe in ("distill", "continual"):
        if recipe in raw:
            raise ConfigError(
                f"{source}: the {recipe}: section is read by `tunelab {recipe} CONFIG`, not `tunelab train`"
            )
    _check_union_name(raw, source, "task", TASKS, "classification")
    moved = moved_keys(raw)
    if moved and not upgrade:
        old, new = moved[0]
        task, key = MOVED.get(old, ("causal_lm", "..."))
        more = f"; also moved: {', '.join(o for o, _ in moved[1:])}" if len(moved) > 1 else ""
        raise ConfigError(
            f"{source}: '{old}' moved to '{new}' (since tunelab 0.2 a task's options live in its task: section: "
            f"task: {{name: {task}, {key}: ...}}, or the override {new}=...){more}"
        )
    if moved:
        move(raw, moved)
    _check_union_name(raw, source, "method", METHODS, "full")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [(_key(err), _explain(err, raw)) for err in exc.errors()]
        raise ConfigError(f"{source}: " + "; ".join(msg for _, msg in problems), problems=problems) from None


def dump(cfg: RunConfig) -> str:
    """The resolved config as YAML (every default spelled out)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of sections (model:, data:, train:, ...), got {type(data).__name__}"
        )
    return data


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected key.path=value, e.g. train.lr=3e-5")
    key, _, text = item.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override '{item}': empty key")
    value = parse_override_value(text)
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part in ("method", "task"):  # `method=lora` then `method.r=4`
            child = node[part] = {"name": child}
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_override_value(text: str) -> Any:
    """An override's value as YAML reads it (numbers, booleans, null, [lists], {mappings}), except that text YAML
    would read as a mapping without braces stays a string: ``data.token_prefix=en:`` is "en:", not {"en": None}."""
    if not text.strip():
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict) and not text.lstrip().startswith("{"):
        return text
    if value == "" and text.strip() not in ('""', "''"):  # `|` and `>` start YAML block scalars
        return text
    return value


def with_overrides(cfg: RunConfig, overrides: list[str], source: str = "overrides") -> RunConfig:
    """A validated copy of ``cfg`` with ``a.b=value`` overrides applied (for commands that adapt a saved run's config)."""
    raw = cfg.model_dump(mode="json")
    for item in overrides:
        _apply_override(raw, item)
    return validate(raw, source=source)


def _check_union_name(raw: dict[str, Any], source: str, section: str, table: dict, default: str) -> None:
    """Expand the short form (``method: lora``) and refuse an unknown name with the closest valid one."""
    value = raw.get(section)
    if isinstance(value, str):
        raw[section] = value = {"name": value}
    if isinstance(value, dict):
        name = value.setdefault("name", default)
        if name not in table:
            msg = f"{section}.name: unknown {section} '{name}'{_suggest(str(name), table)}; valid: {', '.join(table)}"
            raise ConfigError(f"{source}: {msg}", problems=[(f"{section}.name", msg)])


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _loc(err: dict[str, Any]) -> list[str]:
    loc = [str(p) for p in err["loc"]]
    if loc and len(loc) > 1 and loc[1] in UNIONS.get(loc[0], {}):
        loc = [loc[0]] + loc[2:]  # drop the union tag pydantic inserts
    return loc


def _key(err: dict[str, Any]) -> str:
    """The dotted key a validation error is about ('' for a whole-config rule)."""
    return ".".join(_loc(err))


def _explain(err: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = _loc(err)
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1])
        keys = [f"{parent}.{k}" if parent else k for k in _valid_keys(parent, raw)]
        return f"unknown key '{path}'{_suggest(path, keys)}"
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    if isinstance(got, dict) and err["type"] in ("string_type", "int_type", "float_type", "bool_type"):
        shown = f" (got the mapping {got!r}: quote the value, e.g. {loc[-1]}: 'a: b' in YAML)"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{path}: {msg}{shown}" if path else msg


def _valid_keys(parent: str, raw: dict[str, Any]) -> list[str]:
    """Field names valid under a dotted section path."""
    model: type[BaseModel] = RunConfig
    for part in [p for p in parent.split(".") if p]:
        if part in UNIONS:
            table, default = UNIONS[part], DEFAULT_NAMES[part]
            model = table[(raw.get(part) or {}).get("name", default)].Config
            continue
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


UNIONS: dict[str, dict] = {"task": TASKS, "method": METHODS}
DEFAULT_NAMES = {"task": "classification", "method": "full"}
