"""`tunelab distill CONFIG`: a student learns a teacher's soft targets (knowledge distillation).

CONFIG is a training config (the student: ``model:``, ``method:``, ``task:``, ``data:``, ``train:``; a student may
be the teacher's base with fewer layers, ``model.layers: [0, 2, 4]``) plus a ``distill:`` section (the teacher and
the loss). The run is an ordinary fine-tuning run (same run folder, resume, eval/predict/serve) with three changes,
made through ``finetune.Extension``:
  1. the rows of ``distill.unlabelled`` (no label column needed) join the training features;
  2. the teacher's outputs on every training feature are computed once, before the first step, as its top-k logits
     per item (and pooled hidden states for hidden-state matching), and cached in the run folder
     (``teacher_targets.pt``; a resumed run reuses them);
  3. the objective becomes alpha * CE(labels) + (1 - alpha) * T^2 * divergence(teacher, student) per item
     (+ hidden_weight * hidden-state distance per example), summed and divided by the item count by the loop.
Teacher and student must share the tokenizer (the targets are per token for token tasks).
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from tunelab import config as config_mod
from tunelab.errors import ConfigError, ModelError, TunelabError
from tunelab.recipes import finetune
from tunelab.schema import Strict

TARGETS_FILE = "teacher_targets.pt"
SAVED_CONFIG = "distill.yaml"


class DistillConfig(Strict):
    """The ``distill:`` section of a `tunelab distill` config."""

    teacher: str = Field(
        ...,
        description="The teacher: a tunelab run folder (its model and method are rebuilt from it), or a model "
        "(hub id, local HF directory, packaged alias) used as loaded.",
    )
    alpha: float = Field(
        0.5, ge=0, le=1, description="Weight of the cross-entropy on gold labels; 1 - alpha weighs the soft term."
    )
    temperature: float = Field(2.0, gt=0, le=100, description="Softmax temperature T of both models' soft targets.")
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "forward_kl",
        description="forward_kl: KL(teacher||student); reverse_kl: KL(student||teacher); jsd: generalized "
        "Jensen-Shannon with `beta`.",
    )
    beta: float = Field(0.5, gt=0, lt=1, description="jsd only: mixture weight of the teacher (0.5 = symmetric JSD).")
    top_k: int = Field(
        64,
        ge=1,
        le=4096,
        description="Teacher logits kept per item; with more classes than this (an LM vocabulary) both distributions "
        "are renormalised over the teacher's top-k.",
    )
    unlabelled: str | None = Field(
        None,
        description="Extra transfer text without labels (same format and text column as data.train; a label column "
        "is ignored): the student learns the teacher's soft labels on it.",
    )
    max_unlabelled_rows: int | None = Field(None, ge=1, description="Use only the first N unlabelled rows.")
    hidden: Literal["none", "mse", "cosine"] = Field(
        "none",
        description="Also match the last layer's mean-pooled hidden states (through a learned projection when the "
        "widths differ): mse or cosine; none = off.",
    )
    hidden_weight: float = Field(1.0, ge=0, description="Weight of the hidden-state term (per example).")
    teacher_batch_size: int = Field(64, ge=1, le=4096, description="Examples per teacher forward pass when caching.")


def load(path: str | None, overrides: list[str]) -> tuple[config_mod.RunConfig, DistillConfig]:
    """The student's RunConfig and the distill section from CONFIG and ``key=value`` overrides (``distill.*`` ones
    go to the distill section)."""
    raw = config_mod._read_yaml(Path(path)) if path else {}
    section = raw.pop("distill", None) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path or 'config'}: distill: must be a mapping of keys (teacher, alpha, ...)")
    run_overrides = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if key.startswith("distill.") and sep:
            section[key[len("distill.") :]] = config_mod.parse_override_value(value)
        else:
            run_overrides.append(item)
    if "teacher" not in section:
        raise ConfigError(
            f"{path or 'config'}: needs a distill: section naming the teacher (distill: {{teacher: RUN}}, "
            "or the override distill.teacher=RUN)"
        )
    for item in run_overrides:
        config_mod._apply_override(raw, item)
    cfg = config_mod.validate(raw, source=str(path) if path else "overrides")
    return cfg, validate(section, str(path or "config"))


def validate(section: dict, source: str) -> DistillConfig:
    """A DistillConfig, or one ConfigError naming each bad ``distill.`` key (with the closest valid key for a typo)."""
    try:
        return DistillConfig.model_validate(section)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, list(DistillConfig.model_fields), n=1)
                hint = f"; did you mean distill.{close[0]}?" if close else ""
                problems.append(f"distill.{key}: unknown key{hint}")
            else:
                problems.append(f"distill.{key}: {err['msg']}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def run(
    path: str | None, overrides: list[str], *, quiet: bool = False, log=print, resume_anyway: bool = False, callbacks=()
):
    """Distil into the config's output_dir (resuming if interrupted); returns the final metrics."""
    cfg, kd = load(path, overrides)
    check_teacher(kd.teacher)  # before the run folder is created
    return finetune.run(
        cfg, quiet=quiet, log=log, callbacks=callbacks, resume_anyway=resume_anyway, extension=Distillation(kd)
    )


class Distillation(finetune.Extension):
    """The distillation recipe's additions to a fine-tuning run (see the module docstring)."""

    def __init__(self, kd: DistillConfig):
        self.kd = kd
        self.summary: dict = {}

    def extra_splits(self, cfg, task, log) -> dict[str, list]:
        if self.kd.unlabelled is None:
            return {}
        rows = task.read(cfg, self.kd.unlabelled, with_labels=False).rows
        if self.kd.max_unlabelled_rows:
            rows = rows[: self.kd.max_unlabelled_rows]
        if not rows:
            raise TunelabError(f"distill.unlabelled {self.kd.unlabelled}: no rows")
        log(f"distill: {len(rows)} unlabelled transfer rows from {self.kd.unlabelled}")
        return {"unlabelled": rows}

    def adapt(self, setup: finetune.Setup) -> None:
        from tunelab.recipes import distill_run

        check_saved(setup.run_dir, self.kd, setup.log)
        self.summary = distill_run.adapt(setup, self.kd)

    def metrics(self) -> dict:
        return {"distill": self.summary} if self.summary else {}


def check_teacher(teacher: str) -> None:
    """A run folder with a saved model, or a model name tunelab can resolve; a missing local folder is named as such
    (not sent to the hub as an id)."""
    from tunelab import runs
    from tunelab.models import load as model_load

    path = Path(teacher).expanduser()
    if (path / "config.yaml").is_file():
        try:
            runs.check_run_dir(path)
        except TunelabError as exc:
            raise TunelabError(f"distill.teacher: {exc}") from None
        return
    if not path.exists() and path.parent != Path(".") and path.parent.is_dir():
        raise TunelabError(f"distill.teacher {teacher}: no such run folder or model directory")
    try:
        model_load.resolve(teacher)
    except ModelError as exc:
        raise ModelError(f"distill.teacher: {exc}") from None


def check_saved(run_dir: Path, kd: DistillConfig, log) -> None:
    """Write distill.yaml into the run folder, or refuse to resume a run started with another distill section."""
    saved = Path(run_dir) / SAVED_CONFIG
    text = yaml.safe_dump(kd.model_dump(mode="json"), sort_keys=False)
    if saved.is_file() and saved.read_text(encoding="utf-8") != text:
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        diff = [
            f"distill.{k}: {old.get(k)!r} -> {v!r}" for k, v in kd.model_dump(mode="json").items() if old.get(k) != v
        ]
        raise TunelabError(
            f"{run_dir}: holds a distillation started with another distill section ({'; '.join(diff[:5])}); "
            "rerun with the same section to resume, or choose another output_dir"
        )
    saved.write_text(text, encoding="utf-8")


def targets_key(kd: DistillConfig, teacher_id: str, features: list[dict]) -> str:
    """What the cached teacher targets depend on: the teacher (and its weights), k, the hidden-state option, and
    every feature's input ids and labels."""
    h = hashlib.sha256()
    h.update(repr((teacher_id, kd.top_k, kd.hidden != "none")).encode())
    for f in features:
        h.update(repr((f["input_ids"], f.get("labels"))).encode())
    return h.hexdigest()


def teacher_identity(teacher: str) -> str:
    """The teacher and a fingerprint of its weight files (a retrained teacher invalidates the cache)."""
    path = Path(teacher)
    if not path.is_dir():
        return teacher
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
    return repr([(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in files])


def check_tokenizers(teacher_tok, student_tok, teacher: str) -> None:
    """Refuse teacher/student pairs whose tokenizers differ (targets are per token and per vocabulary id)."""
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise ModelError(
            f"distill.teacher {teacher}: its tokenizer differs from the student's ({len(teacher_tok)} vs "
            f"{len(student_tok)} tokens); distillation needs a student that shares the teacher's tokenizer "
            "(e.g. the teacher's own base with model.layers)"
        )
