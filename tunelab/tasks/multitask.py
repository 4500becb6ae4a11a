"""Multi-task learning: several member tasks (each its own task section, data files, labels and head) share one
encoder and one method.

Every member is an ordinary task of ``TASKS`` and does its own work on its own rows: reading and checking its files,
encoding, loss, metrics, prediction. This task only composes them:
  * config: each member's run config is the run's config with the member's ``task:`` and ``data:`` sections;
  * model: a shared encoder and each member's own head (models/multitask.py), built through ``Task.build_model``;
  * batches: each batch holds one member's examples, mixed by training.mixing.TaskMixture (``task.mixing``);
  * metrics: each member's dev metrics under its name, plus ``macro``, the mean of the members' default metrics
    (the default model-selection metric);
  * a trained run answers as one member: ``member_run`` (``predict/eval --task NAME``).
labels.json holds every member's label names as ``member:label`` in config order (a member without labels has none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal

from pydantic import Field, field_validator

from tunelab.errors import TunelabError
from tunelab.schema import Strict
from tunelab.tasks.base import ItemLogits, Prepared, Table, Task
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.mixing import STRATEGIES
from tunelab.training.objective import Objective

TASK_KEY = "task"  # the member name in a collated batch (a plain string: the loop passes it through)
KIND_KEY = "task_kind"  # the member's task name (classification, token_classification...)
OWN_FILES = ("train", "dev", "test")  # data: keys each member gives for itself (the others are shared defaults)


class Member(Strict):
    name: str = Field(description="The member's name: its head, its metrics' prefix, `predict --task NAME`.")
    task: dict[str, Any] | str = Field(
        "classification", description="The member's task section (a task name, or {name: TASK, options...})."
    )
    data: dict[str, Any] = Field(
        description="The member's data section (train is required; keys of the run's data: section that are not "
        "train/dev/test are the defaults)."
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", v):
            raise ValueError("expected letters, digits, '_' or '-' (it names a head and a metric prefix)")
        return v

    @field_validator("data")
    @classmethod
    def _has_train(cls, v: dict) -> dict:
        if "train" not in v:
            raise ValueError("each member needs its own data.train file")
        return v


class Config(Strict):
    name: Literal["multitask"] = "multitask"
    tasks: list[Member] = Field(
        default_factory=list,
        description="The member tasks, each {name, task, data}: one shared encoder and method, one head per member.",
    )
    mixing: Literal[STRATEGIES] = Field(  # type: ignore[valid-type]
        "proportional",
        description="Which member's batch comes next: proportional (each member's batches once per epoch, interleaved: "
        "shares follow the training rows), temperature (drawn with probability rows ** 1/tau: small members more "
        "often) or round_robin.",
    )
    tau: float = Field(2.0, gt=0, description="Temperature of mixing: temperature (1 = proportional).")


@dataclass(frozen=True)
class Tagged:
    """A member's row: the member's name, its task's name and the row that task read."""

    task: str
    kind: str
    row: Any


@dataclass
class MemberOutputs:
    """``forward``'s outputs for a batch of member ``task``."""

    task: str
    outputs: Any


class MultiTask(Task):
    name = "multitask"
    Config = Config
    auto_class = "AutoModel"  # the shared encoder; each member's head comes from the member's own model class
    metrics = (Metric("macro", True, "mean over the members of each member's default metric"),)
    row_kind = "tagged"

    # ------------------------------------------------------------ config and data

    def check(self, cfg) -> None:
        if not cfg.task.tasks:
            raise ValueError("task.tasks: a multitask run needs at least one member task")
        for key in OWN_FILES:
            if getattr(cfg.data, key) != type(cfg.data).model_fields[key].default:
                raise ValueError(
                    f"data.{key}: a multitask run reads each member's own files: set task.tasks[i].data.{key}"
                )
        seen = set()
        for i, member in enumerate(cfg.task.tasks):
            if member.name in seen:
                raise ValueError(f"task.tasks[{i}].name: '{member.name}' is used twice")
            seen.add(member.name)
            mcfg = member_config(cfg, i)
            kind = _tasks()[mcfg.task.name]
            if kind.row_kind == self.row_kind or kind.generates:
                raise ValueError(
                    f"task.tasks[{i}].task: a {kind.name} member cannot share an encoder head-wise "
                    "(members are classification-like tasks: classification, token_classification, ...)"
                )
            if not kind.metric(None).higher_is_better:
                raise ValueError(
                    f"task.tasks[{i}].task: {kind.name}'s default metric {kind.metric(None).name} is lower-is-better; "
                    "the macro average needs members whose default metric is higher-is-better"
                )

    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        names = ", ".join(m.name for m in cfg.task.tasks)
        raise TunelabError(
            f"{path}: a multitask run reads each member's own files; name a member with --task ({names})"
        )

    def read_splits(self, cfg, log) -> dict[str, list]:
        splits: dict[str, list] = {}
        for i, member in enumerate(cfg.task.tasks):
            mcfg = member_config(cfg, i)
            for split, rows in _tasks()[mcfg.task.name].read_splits(mcfg, log).items():
                splits.setdefault(split, []).extend(Tagged(member.name, mcfg.task.name, r) for r in rows)
            log(f"task {member.name} ({mcfg.task.name}): {mcfg.data.train}")
        return splits

    def label_space(self, rows: list, source: str) -> list[str] | None:
        out: list[str] = []
        for name, kind, member_rows in _by_member(rows):
            out += [f"{name}:{label}" for label in _tasks()[kind].label_space(member_rows, f"{source} ({name})") or []]
        return out

    def stratify_key(self, row: Tagged):
        return row.task

    def model_kwargs(self, labels: list[str] | None) -> dict:
        return {}

    def build_model(self, cfg, src, labels: list[str] | None):
        from tunelab.models import load as model_load
        from tunelab.models import multitask

        encoder, missing = model_load.load_model(src, self.auto_class)
        members = {}
        for i, member in enumerate(cfg.task.tasks):
            mcfg = member_config(cfg, i)
            model, head = _tasks()[mcfg.task.name].build_model(mcfg, src, member_labels(labels, member.name))
            base = model.base_model_prefix + "."
            members[member.name] = (model, [h for h in head if not h.startswith(base)])  # base parts: the encoder's
        model, head = multitask.build(encoder, members)
        return model, [f"encoder.{h}" for h in missing] + head

    def members(self, cfg) -> list[str]:
        return [m.name for m in cfg.task.tasks]

    def member_config(self, cfg, name: str | None):
        if name is None:
            return cfg
        return member_config(cfg, self._index(cfg, name))

    def member_run(self, run, name: str | None):
        if name is None:
            return run
        from tunelab.models.multitask import TaskView

        mcfg = self.member_config(run.cfg, name)
        state = run.task_state.get(name, {})
        return replace(
            run, cfg=mcfg, model=TaskView(run.model, name), labels=member_labels(run.labels, name), task_state=state
        )

    def _index(self, cfg, name: str) -> int:
        names = self.members(cfg)
        if name not in names:
            raise TunelabError(f"--task {name}: not a member of this multitask run; members: {', '.join(names)}")
        return names.index(name)

    # ------------------------------------------------------------ training

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        from tunelab.training.mixing import TaskMixture, source_lengths

        parts: dict[str, Prepared] = {}
        kinds: dict[str, str] = {}
        features: dict[str, list] = {split: [] for split in splits}
        for i, member in enumerate(cfg.task.tasks):
            mcfg = member_config(cfg, i)
            kinds[member.name] = mcfg.task.name
            msplits = {s: [r.row for r in rows if r.task == member.name] for s, rows in splits.items()}
            mlabels = member_labels(labels, member.name)
            parts[member.name] = _tasks()[mcfg.task.name].prepare(mcfg, tokenizer, mlabels, msplits, log)
            for split, feats in parts[member.name].features.items():
                features[split] += [{**f, "_task": member.name} for f in feats]
        lengths = source_lengths([p.features["train"] for p in parts.values()], cfg.train.length_grouping)
        mix = TaskMixture(lengths, cfg.train.batch_size, cfg.train.seed, cfg.task.mixing, cfg.task.tau)
        log("mixing: " + ", ".join(f"{n} {w:.3f}" for n, w in zip(parts, mix.weights)) + f" ({cfg.task.mixing})")
        collate = partial(_collate, {n: p.collate for n, p in parts.items()}, kinds)
        objectives = {n: p.objective for n, p in parts.items()}
        objective = Objective(self.forward, partial(_member_loss, objectives), partial(_member_count, objectives))
        metric = {n: _tasks()[k].metric(None).name for n, k in kinds.items()}
        tests = {n: p.evaluate_test for n, p in parts.items() if p.evaluate_test is not None}
        return Prepared(
            features,
            collate,
            objective,
            combined({n: p.evaluate for n, p in parts.items()}, metric),
            combined({n: p.evaluate_final for n, p in parts.items()}, metric),
            combined(tests, metric) if tests else None,
            baseline=any(p.baseline for p in parts.values()),
            info={n: p.info for n, p in parts.items() if p.info},
            task_state={n: p.task_state for n, p in parts.items()},
            sampler=mix,
        )

    def forward(self, model, batch: dict) -> MemberOutputs:
        from tunelab.models.multitask import TaskView

        name = batch[TASK_KEY]
        return MemberOutputs(name, _tasks()[batch[KIND_KEY]].forward(TaskView(model, name), _inputs(batch)))

    def loss(self, outputs: MemberOutputs, batch: dict):
        return _tasks()[batch[KIND_KEY]].loss(outputs.outputs, _inputs(batch))

    def item_logits(self, outputs: MemberOutputs, batch: dict) -> ItemLogits:
        return _tasks()[batch[KIND_KEY]].item_logits(outputs.outputs, _inputs(batch))

    # ------------------------------------------------------------ using a trained run

    def evaluator(self, run, rows: list, source: str, log) -> Evaluator:
        evaluators, metric = {}, {}
        for name, kind, member_rows in _by_member(rows):
            # scored on the shared model through a TaskView (see combined)
            evaluators[name] = _tasks()[kind].evaluator(self.member_run(run, name), member_rows, source, log)
            metric[name] = _tasks()[kind].metric(None).name
        return combined(evaluators, metric)

    def parse_inputs(self, lines, source: str) -> list:
        raise TunelabError(f"{source}: a multitask run predicts as one member: pass --task NAME")

    def predict(self, run, inputs: list) -> list[dict]:
        names = ", ".join(self.members(run.cfg))
        raise TunelabError(f"a multitask run predicts as one member: pass --task NAME ({names})")

    def reference(self, row: Tagged) -> tuple[Any, dict]:
        return _tasks()[row.kind].reference(row.row)

    def prompt_template(self, run) -> None:
        return None

    def prompts(self, rows: list) -> list:
        return []


# ---------------------------------------------------------------- pure parts


def _tasks() -> dict[str, Task]:
    from tunelab.tasks import TASKS  # the registry imports this module

    return TASKS


def member_config(cfg, index: int):
    """The run config of member ``index``: the member's task and data sections (the run's data: keys other than
    train/dev/test are defaults under the member's), everything else the run's; validated like any config."""
    from tunelab import config as config_mod

    member = cfg.task.tasks[index]
    raw = cfg.model_dump(mode="json")
    data = {k: v for k, v in raw["data"].items() if k not in OWN_FILES}
    raw["data"] = {**data, **member.data}
    raw["task"] = member.task
    raw["train"]["metric"] = None  # the member's default metric
    return config_mod.validate(raw, source=f"task.tasks[{index}] ({member.name})")


def member_labels(labels: list[str] | None, name: str) -> list[str] | None:
    """Member ``name``'s label names from the run's ``member:label`` list (None: the member has no labels)."""
    mine = [label.split(":", 1)[1] for label in labels or [] if label.split(":", 1)[0] == name]
    return mine or None


def _by_member(rows: list[Tagged]) -> list[tuple[str, str, list]]:
    """(member, task name, its rows) in order of first appearance."""
    groups: dict[str, tuple[str, list]] = {}
    for r in rows:
        groups.setdefault(r.task, (r.kind, []))[1].append(r.row)
    return [(name, kind, member_rows) for name, (kind, member_rows) in groups.items()]


def _inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in (TASK_KEY, KIND_KEY)}


def _collate(collates: dict, kinds: dict, features: list[dict]) -> dict:
    """One member's batch: its own collate, plus the member's name for the objective."""
    names = {f["_task"] for f in features}
    if len(names) != 1:
        raise TunelabError(f"multitask: a batch mixes member tasks {sorted(names)}; batches come from task.mixing")
    name = names.pop()
    batch = collates[name]([{k: v for k, v in f.items() if k != "_task"} for f in features])
    batch[TASK_KEY], batch[KIND_KEY] = name, kinds[name]
    return batch


def _member_loss(objectives: dict, outputs: MemberOutputs, batch: dict):
    return objectives[outputs.task].loss(outputs.outputs, _inputs(batch))


def _member_count(objectives: dict, batch: dict) -> int:
    return objectives[batch[TASK_KEY]].count(_inputs(batch))


def combined(evaluators: dict[str, Evaluator], metric: dict[str, str]) -> Evaluator:
    """One evaluator over the members' items in member order: each member's summary under ``tasks``, its metrics as
    ``NAME/METRIC``, and ``macro``, the mean of ``metric[NAME]`` over the members."""
    from tunelab.models.multitask import TaskView

    spans, start = {}, 0
    for name, ev in evaluators.items():
        spans[name] = (start, start + ev.size)
        start += ev.size

    def score(model, indices: list[int]) -> list:
        out: dict[int, Any] = {}
        for name, (lo, hi) in spans.items():
            mine = [i for i in indices if lo <= i < hi]
            if mine:
                out.update(zip(mine, evaluators[name].score(TaskView(model, name), [i - lo for i in mine])))
        return [out[i] for i in indices]

    def summarize(results: list) -> dict:
        per = {name: evaluators[name].summarize(results[lo:hi]) for name, (lo, hi) in spans.items()}
        flat = {f"{n}/{k}": v for n, s in per.items() for k, v in s.items() if isinstance(v, (int, float))}
        macro = sum(per[n][metric[n]] for n in per) / len(per)
        return {"macro": macro, **flat, "tasks": per}

    return Evaluator(start, score, summarize)
