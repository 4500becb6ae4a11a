"""The Task protocol: everything tunelab's commands need from a task, declared once.

A task is what the model learns (classification, token classification, causal LM; later seq2seq,
masked LM, regression, multi-label...). ``finetune``, ``compare``, ``eval``, ``predict``, the CLI and the
server call only the methods below; they never branch on a task's name or probe for attributes.

To add a task:
  1. Write ``tunelab/tasks/<name>.py`` with a ``Config(schema.Strict)`` whose ``name`` is a
     ``Literal["<name>"]`` (it becomes the ``task:`` section; every option has a description), and a class
     that subclasses ``Task`` and implements every abstract method. Import torch inside functions:
     configs must load without it.
  2. Add one instance to ``TASKS`` in ``tunelab/tasks/__init__.py`` (``register`` checks it).
  3. Give the task contract suite (tests/tasks/test_task_contract.py) a small data file and config for it:
     read -> train -> save -> load -> eval -> predict, serve, compare's baseline and resume then run on it.
Data flows: ``read`` rows -> ``label_space`` -> ``prepare`` (features, collate, objective, evaluators)
-> the loop (``forward`` then the pure ``loss``) -> run folder -> ``evaluate``/``predict`` on a ``LoadedRun`` (``reference`` pairs a labelled row's input with
its answer, for showing predictions next to answers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Hashable, Iterable

from tunelab.schema import Strict
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.objective import Objective

# What ``Task.read`` returns per row, for code that handles the rows of every task alike (the data toolkit:
# audit, clean, scrub, augment, split). A new task whose rows have one of these shapes gets the toolkit as is;
# a new shape is added here and in the toolkit's per-kind functions (tunelab/data/corpus.py lists them).
ROW_KINDS = {
    "text": "sources.Row: text, optional text_pair, a class label",
    "tokens": "conll.Sentence: words, one tag per word, character offsets when read from raw text",
    "conversation": "templates.Example: chat messages, or one plain-text document",
    "tagged": "multitask.Tagged: a member task's name and that task's row (the toolkit works on one member's files)",
}


@dataclass
class Table:
    """Rows read from one file, and the (line, reason) of rows skipped under ``data.on_error: skip``."""

    rows: list
    skipped: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Prepared:
    """What ``prepare`` hands the recipe and the loop.

    Attributes:
        features: encoded examples per split ("train", "dev", and "test" when a test file is given).
        collate: features -> batch of tensors (non-tensor values pass through to the objective).
        objective: forward, pure loss and item count for the loop.
        evaluate: the dev evaluation during training (cheap).
        evaluate_final: the dev evaluation after training (may add generations, samples...).
        evaluate_test: the test evaluation (None without a test file).
        baseline: evaluate the untrained model with ``evaluate_final`` first (the report compares).
        info: data facts for the report (counts, truncation, padding); empty when there is nothing to say.
        task_state: JSON-ready values the task fits on the data and needs again to evaluate or predict with the
            trained run (regression: the target scaling from the training rows; multi-label: the decision thresholds
            tuned on dev, filled in by ``evaluate_final``). The recipe writes it to the run folder's task_state.json
            after the final evaluation; ``LoadedRun.task_state`` holds it back ({} when the task fitted nothing).
        groups: the class of each training feature, for ``train.sampler: balanced`` (None: the task has no
            classes to balance; tasks with ``balances`` give it).
        sampler: a training.sampler.Sampler the task plans its batches with (multi-task: one member per batch,
            mixed by training.mixing.TaskMixture); None: the loop's default or ``train.sampler``.
    """

    features: dict[str, list[dict]]
    collate: Callable[[list[dict]], dict]
    objective: Objective
    evaluate: Evaluator
    evaluate_final: Evaluator
    evaluate_test: Evaluator | None = None
    baseline: bool = False
    info: dict = field(default_factory=dict)
    task_state: dict = field(default_factory=dict)
    groups: list | None = None
    sampler: Any = None


@dataclass
class ItemLogits:
    """A batch's per-item predictions, for losses between two models' outputs (distillation, LwF).

    An item is what the task's loss counts: an example (classification), a word (token classification), a target
    token (causal LM). Either ``logits`` (items, classes) is given, or ``hidden`` (items, d) with the head's
    ``weight`` (classes, d) when logits = hidden @ weight.T would be too large to materialise (an LM vocabulary).

    Attributes:
        rows: (items,) the batch row each item belongs to, items in row-major (row, position) order.
        labels: (items,) gold class ids, -100 where the item has no label (unlabelled transfer text).
    """

    rows: Any
    labels: Any
    logits: Any = None
    hidden: Any = None
    weight: Any = None


class Task(ABC):
    """What a task provides. Every member is required; shared code never checks for optional parts.

    Class attributes:
        name: the config name (``task: <name>``), equal to ``Config.name``'s literal.
        Config: the ``task:`` config section (a Strict model with ``name: Literal[name]``).
        auto_class: the transformers Auto class the base model is loaded with (``model_class`` may pick another from
            the config, e.g. a masked LM for prompt-based classification).
        metrics: every dev metric ``evaluate`` reports as a number, with its direction; the first is the
            default ``train.metric`` (a bad ``train.metric`` is refused at config time, naming these).
        generates: whether runs of this task answer ``generate``, ``chat`` and the completion endpoints.
        row_kind: the shape of the rows ``read`` returns, one of ``ROW_KINDS`` (the data toolkit reads, checks
            and rewrites rows by their shape, never by the task's name).
        balances: whether the task honours ``train.class_weights`` and ``train.focal_gamma`` in its objective and
            gives ``Prepared.groups`` for ``train.sampler: balanced`` (the config refuses them for other tasks).
    """

    name: ClassVar[str]
    Config: ClassVar[type[Strict]]
    auto_class: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    row_kind: ClassVar[str]
    generates: ClassVar[bool] = False
    balances: ClassVar[bool] = False

    def metric(self, name: str | None) -> Metric:
        """The declared metric ``name`` (None: the default); ValueError naming the task's metrics otherwise."""
        if name is None:
            return self.metrics[0]
        for m in self.metrics:
            if m.name == name:
                return m
        raise ValueError(
            f"'{name}' is not a metric of task {self.name}; choose one of: {', '.join(m.name for m in self.metrics)}"
        )

    # ------------------------------------------------------------ config and data

    @abstractmethod
    def check(self, cfg) -> None:
        """Config-time checks across sections (``cfg`` is the whole RunConfig); raise ValueError("key: why")."""

    @abstractmethod
    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        """Rows of a data file per ``cfg.data`` and the task section; ``with_labels=False`` for prediction
        input (labels not required). Bad input raises DataError starting ``path:line:``."""

    @abstractmethod
    def label_space(self, rows: list, source: str) -> list[str] | None:
        """Label names in id order from the training rows (None for tasks without labels). They are saved in
        labels.json and size the head."""

    def check_rows(self, cfg, rows: list, source: str, log: Callable[[str], None]) -> None:
        """Checks on the training rows before anything is encoded (suspicious labels...): raise DataError naming
        ``source`` and lines, or log a warning. The base checks nothing."""

    def model_class(self, cfg) -> str:
        """The transformers Auto class for a run of this config; the base gives ``auto_class``."""
        return self.auto_class

    def build_model(self, cfg, src, labels: list[str] | None) -> tuple[Any, list[str]]:
        """(base model with its freshly initialised head, head module names) for a run of ``cfg`` from the model source
        ``src`` (models.load.Source). The base loads ``model_class(cfg)`` with ``model_kwargs(labels)``; a task whose
        model is composed of several parts (multi-task: one shared encoder, a head per member) builds it here."""
        from tunelab.models import load as model_load

        return model_load.load_model(src, self.model_class(cfg), **self.model_kwargs(labels))

    def read_splits(self, cfg, log: Callable[[str], None]) -> dict[str, list]:
        """train/dev(/test) rows of a run: ``read`` on ``cfg.data``'s files, dev carved out of train (stratified,
        seeded) when no dev file is given. A task that reads several files per split (multi-task) overrides it."""
        from tunelab.data.split import stratified_split

        data = cfg.data
        train = _read(self, cfg, data.train, log)
        self.check_rows(cfg, train, data.train, log)
        if data.max_train_rows:
            train = train[: data.max_train_rows]
        if data.dev:
            dev = _read(self, cfg, data.dev, log)
        else:
            keys = [self.stratify_key(r) for r in train]
            train_idx, dev_idx = stratified_split(keys, data.dev_fraction, cfg.train.seed)
            train, dev = [train[i] for i in train_idx], [train[i] for i in dev_idx]
            log(
                f"no dev file: held out {len(dev)} of {len(train) + len(dev)} training rows "
                f"(stratified, seed {cfg.train.seed})"
            )
        if data.max_dev_rows:
            dev = dev[: data.max_dev_rows]
        splits = {"train": train, "dev": dev}
        if data.test:
            splits["test"] = _read(self, cfg, data.test, log)
        return splits

    def members(self, cfg) -> list[str]:
        """Names of the member tasks of a composite run (multi-task), [] for a single task."""
        return []

    def member_config(self, cfg, name: str | None):
        """The run config as member task ``name`` sees it (``predict/eval --task NAME``); None gives ``cfg``. A single
        task has no members and refuses a name."""
        if name is not None:
            from tunelab.errors import TunelabError

            raise TunelabError(f"--task {name}: a {self.name} run has no member tasks (only multitask runs do)")
        return cfg

    def member_run(self, run, name: str | None):
        """``run`` (a runs.LoadedRun) as member task ``name`` sees it: its config, labels and a model that answers
        with that member's head. None gives ``run``; a single task refuses a name."""
        self.member_config(run.cfg, name)
        return run

    @abstractmethod
    def stratify_key(self, row) -> Hashable | None:
        """What the automatic dev split stratifies on (a class label), or None."""

    @abstractmethod
    def model_kwargs(self, labels: list[str] | None) -> dict:
        """Extra ``from_pretrained`` arguments for the base model (num_labels, id2label, ...)."""

    # ------------------------------------------------------------ training

    @abstractmethod
    def prepare(
        self, cfg, tokenizer, labels: list[str] | None, splits: dict[str, list], log: Callable[[str], None]
    ) -> Prepared:
        """Encode the splits and build collate, the objective and the evaluators for one training run."""

    @abstractmethod
    def forward(self, model, batch: dict) -> Any:
        """Model outputs for a batch (the only place the model runs during training). Outputs feed ``loss``
        and may be combined with other models' outputs (distillation) before that."""

    @abstractmethod
    def loss(self, outputs: Any, batch: dict) -> tuple[Any, int]:
        """(sum of per-item losses as a float tensor, item count) from ``forward``'s outputs; pure. Items without
        a label (-100: unlabelled transfer rows) add nothing and are not counted."""

    @abstractmethod
    def item_logits(self, outputs: Any, batch: dict) -> ItemLogits:
        """Per-item logits of ``forward``'s outputs (labelled or not) for losses that compare two models; pure.

        Unlabelled rows still have items (every example; the first sub-token of each word; each next token)."""

    # ------------------------------------------------------------ using a trained run

    @abstractmethod
    def evaluator(self, run, rows: list, source: str, log: Callable[[str], None]) -> Evaluator:
        """The evaluator of ``run`` (a runs.LoadedRun: cfg, model, tokenizer, labels, task_state) on labelled rows;
        its summary reports every declared metric. ``evaluate`` runs it."""

    def evaluate(self, run, rows: list, source: str, log: Callable[[str], None]) -> dict:
        """Metrics of ``run`` on labelled rows (``tunelab eval``, compare's untrained baseline): the task's
        declared metrics plus the run's own ``eval.metrics``."""
        from tunelab.evaluation import custom
        from tunelab.training.evaluation import evaluate as run_evaluator

        user = custom.load(run.cfg.eval.metrics)
        return run_evaluator(
            custom.with_user_metrics(self.evaluator(run, rows, source, log), user, self.name), run.model
        )

    @abstractmethod
    def parse_inputs(self, lines: Iterable[str], source: str) -> list:
        """Prediction inputs from text lines (stdin, or what the server received): each line is raw text or a
        JSON object whose keys the task documents. Errors name ``source:line``."""

    @abstractmethod
    def predict(self, run, inputs: list) -> list[dict]:
        """One JSON-ready dict per input, in order; each has ``text`` (the input as text) and the task's outputs."""

    @abstractmethod
    def reference(self, row) -> tuple[Any, dict]:
        """(prediction input, answer) of a labelled row: the input ``predict`` takes for it (its label removed)
        and the answer it holds in the keys ``predict`` returns (classification: label; token classification:
        entities). Dashboards show the answer next to the prediction of the same keys."""

    @abstractmethod
    def prompt_template(self, run) -> str | None:
        """The chat template prompts of ``run`` are rendered with (generating tasks), else None."""

    def generation_input(self, run, texts: list[str]) -> list:
        """What ``tunelab generate --prompt TEXT`` (and ``--input``'s ``{"prompt": TEXT}`` lines) hands
        ``generation.decode.generate`` for raw texts sent to ``run``: the base sends each text as it is (a causal LM
        continues it); a task whose runs learnt their input in a wrapping (seq2seq's ``task.prompt``, in a chat turn
        for decoder-only models) wraps the texts the same way, so ``generate`` answers as ``predict`` does."""
        return list(texts)

    @abstractmethod
    def prompts(self, rows: list) -> list:
        """Generation prompts made from labelled rows, each cut before its reference, in the form
        ``generation.decode.generate`` takes (a message list, or raw text to continue). Checks that compare two models'
        generations on dev data use them (the GGUF export's greedy parity). [] for tasks that do not generate."""


def _read(task: Task, cfg, path: str, log) -> list:
    table = task.read(cfg, path)
    if table.skipped:
        lines = ", ".join(str(line) for line, _ in table.skipped[:10])
        more = ", ..." if len(table.skipped) > 10 else ""
        log(f"{path}: skipped {len(table.skipped)} bad rows (lines {lines}{more})")
    return table.rows


def register(*tasks: Task) -> dict[str, Task]:
    """The name -> task table, after checking each task: a Task, its Config tagged with its name, metrics and row
    kind declared."""
    table: dict[str, Task] = {}
    for task in tasks:
        if not isinstance(task, Task):
            raise TypeError(f"{type(task).__name__} is not a tunelab.tasks.base.Task")
        declared = task.Config.model_fields["name"].default
        if declared != task.name or task.name in table:
            raise TypeError(f"task '{task.name}': Config.name is '{declared}' (must equal the task name, once)")
        if not task.metrics:
            raise TypeError(f"task '{task.name}' declares no metrics")
        if getattr(type(task), "row_kind", None) not in ROW_KINDS:  # registration checks the declaration once
            raise TypeError(f"task '{task.name}': row_kind must be one of {', '.join(ROW_KINDS)}")
        table[task.name] = task
    return table


class UnlabelledTask(Task):
    """A task whose rows carry no class labels (causal and masked LM, seq2seq, retrieval): no label space and so no
    labels.json, no stratified automatic dev split, no head arguments for ``from_pretrained``."""

    def label_space(self, rows: list, source: str) -> None:
        return None

    def stratify_key(self, row) -> None:
        return None

    def model_kwargs(self, labels: list[str] | None) -> dict:
        return {}
