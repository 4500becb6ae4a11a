"""The task contract: every task in TASKS, on a tiny model and toy data, through the declared protocol only.

read -> train 2 steps -> save -> load -> `tunelab eval` (equals the run's own dev metrics) -> `tunelab predict`
-> /v1/predict through the real server and the `openai` client (equals predict); compare's untrained baseline;
forward once, then a pure loss that is a sum; resume exactness; a bad train.metric refused at config time.
Adding a task = giving it a CASE below.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from tests.conftest import write_alpaca, write_scores, write_sentiment, write_topics
from tests.serve.harness import client, running
from tunelab import cli, config, runs
from tunelab.errors import ConfigError
from tunelab.recipes import compare, finetune
from tunelab.tasks import TASKS, Task
from tunelab.tasks.base import ROW_KINDS, register
from tunelab.training import checkpoint
from tunelab.training.callbacks import Callback


def write_ner(path: Path, n: int = 48, seed: int = 0) -> Path:
    """A learnable toy CoNLL file: 'actor' is a person, 'film story' a work, the rest is O."""
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        words = [(w, "O") for w in rng.sample("the a is was it this of to in good bad".split(), 3)]
        words.insert(rng.randint(0, 3), ("actor", "B-PER"))
        words += [("film", "B-WORK"), ("story", "I-WORK")] if rng.random() < 0.5 else []
        blocks.append("\n".join(f"{w}\t{t}" for w, t in words))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


@dataclass
class Case:
    """Everything the suite needs to exercise one task."""

    model: str  # fixture name of the tiny model
    data: Callable[[Path], tuple[Path, Path]]  # tmp -> (train file, dev file)
    overrides: list[str]
    inputs: list[str]  # prediction input lines (stdin / server)
    check: Callable[[dict, str], None]  # (one prediction, its input line) -> asserts
    member: str | None = None  # a composite task (multitask): the member that eval/predict/serve go through
    members: Callable[[Path], list[str]] | None = None  # tmp -> overrides naming the members' files (top data unset)


def _clf_data(tmp: Path):
    return write_sentiment(tmp / "train.tsv", n=48), write_sentiment(tmp / "dev.tsv", n=16, seed=1)


def _topic_data(tmp: Path):
    return write_topics(tmp / "train.tsv"), write_topics(tmp / "dev.tsv", n=16, seed=1)


def _score_data(tmp: Path):
    return write_scores(tmp / "train.tsv"), write_scores(tmp / "dev.tsv", n=16, seed=1)


def _ner_data(tmp: Path):
    return write_ner(tmp / "train.conll"), write_ner(tmp / "dev.conll", n=16, seed=1)


def _lm_data(tmp: Path):
    return write_alpaca(tmp / "train.json", 24), write_alpaca(tmp / "dev.json", 6, seed=1)


def _multitask_members(tmp: Path) -> list[str]:
    """Two members sharing the encoder: sentiment (a sequence head) and NER (a token head)."""
    (tmp / "a").mkdir(exist_ok=True)
    (tmp / "b").mkdir(exist_ok=True)
    a_train, a_dev = _clf_data(tmp / "a")
    b_train, b_dev = _ner_data(tmp / "b")
    return [
        f"task.tasks=[{{name: a, data: {{train: '{a_train}', dev: '{a_dev}', text_column: sentence}}}}, "
        f"{{name: b, task: {{name: token_classification, stride: 4}}, data: {{train: '{b_train}', dev: '{b_dev}'}}}}]",
        "model.max_length=16",
    ]


def write_pairs(path: Path, n: int = 24, seed: int = 0) -> Path:
    """A learnable toy text-to-text JSONL file: the target reverses the two source words (two references)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.sample("good bad movie film great fun dull love".split(), 2)
        rows.append(json.dumps({"source": f"{a} {b}", "target": [f"{b} {a}", b]}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_query_items(path: Path, n: int, seed: int = 0) -> Path:
    """A toy (query, item) TSV for retrieval: the item repeats two of the query's words, so it can be learned."""
    words = "good great fine bad awful boring movie film plot actor story fun dull love hate".split()
    rng = random.Random(seed)
    lines = ["query\titem"]
    for _ in range(n):
        a, b, c = rng.sample(words, 3)
        lines.append(f"{a} {b} {c}\t{a} {b}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _pair_data(tmp: Path):
    return write_pairs(tmp / "train.jsonl"), write_pairs(tmp / "dev.jsonl", 6, seed=1)


def _text_data(tmp: Path):
    rng = random.Random(0)
    words = "good bad movie film great fun dull love the a".split()
    for name, n in (("train.txt", 40), ("dev.txt", 8)):
        (tmp / name).write_text("\n".join(" ".join(rng.sample(words, 5)) for _ in range(n)) + "\n", encoding="utf-8")
    return tmp / "train.txt", tmp / "dev.txt"


def _check_fills(out: dict, line: str) -> None:
    assert out["text"] == line and len(out["fills"]) == line.count("[MASK]")
    assert all(len(f) == 5 and all(0 <= c["p"] <= 1 for c in f) for f in out["fills"])


def _retrieval_data(tmp: Path):
    return write_query_items(tmp / "train.tsv", 48), write_query_items(tmp / "dev.tsv", 16, seed=1)


def _check_embedding(out: dict, line: str) -> None:
    assert out["text"] == line and len(out["embedding"]) == 32  # tiny BERT's hidden size, L2-normalised
    assert sum(x * x for x in out["embedding"]) == pytest.approx(1, abs=1e-3)


def _check_label(out: dict, line: str) -> None:
    assert out["text"] == line and out["label"] in ("0", "1") and abs(sum(out["probs"].values()) - 1) < 1e-4


def _check_label_set(out: dict, line: str) -> None:
    assert out["text"] == line and set(out["labels"]) <= {"cinema", "story", "people"}
    assert set(out["probs"]) == {"cinema", "story", "people"} and all(0 <= p <= 1 for p in out["probs"].values())


def _check_value(out: dict, line: str) -> None:
    assert out["text"] == line and isinstance(out["value"], float)


def _check_spans(out: dict, line: str) -> None:
    assert out["text"] == line and len(out["tags"]) == len(line.split())
    for e in out["entities"]:  # character offsets into the input text
        assert line[e["start"] : e["end"]] == e["text"] and 0 < e["score"] <= 1


def _check_generation(out: dict, line: str) -> None:
    assert out["text"] == line and isinstance(out["output"], str) and out["finish_reason"] in ("eos", "stop", "length")


CASES = {
    "classification": Case(
        "tiny_bert_dir", _clf_data, ["data.text_column=sentence"], ["good fun movie", "awful dull plot"], _check_label
    ),
    "multi_label": Case(
        "tiny_bert_dir", _topic_data, ["data.text_column=sentence"], ["the film plot", "a good actor"], _check_label_set
    ),
    "regression": Case(
        "tiny_bert_dir",
        _score_data,
        ["data.text_column=sentence", "data.label_column=score"],
        ["good great movie", "awful plot"],
        _check_value,
    ),
    "token_classification": Case(
        "tiny_bert_dir",
        _ner_data,
        ["model.max_length=16", "task.stride=4"],
        ["the actor was in the film story", "a good film"],
        _check_spans,
    ),
    "prompt_classification": Case(  # the LM head read through a template: no new head, so "untuned model"
        "tiny_llama_dir",
        _clf_data,
        ["data.text_column=sentence", "prompt.verbalizer={0: [bad], 1: [good]}", "model.max_length=32"],
        ["good fun movie", "awful dull plot"],
        _check_label,
    ),
    "retrieval": Case(
        "tiny_bert_dir",
        _retrieval_data,
        ["data.text_column=query", "data.text_pair_column=item", "task.negatives=3"],
        ["good fun movie", "awful dull plot"],
        _check_embedding,
    ),
    "multitask": Case(
        "tiny_bert_dir", _clf_data, [], ["good fun movie", "awful dull plot"], _check_label, "a", _multitask_members
    ),
    "causal_lm": Case(
        "tiny_llama_dir",
        _lm_data,
        ["model.max_length=64", "task.eval_generations=2", "task.eval_max_new_tokens=4", "generation.max_new_tokens=4"],
        ["Say the word good", "Say the word bad"],
        _check_generation,
    ),
    "seq2seq": Case(  # decoder-only here; tests/tasks/test_seq2seq.py trains tiny T5, BART and BERT2BERT
        "tiny_llama_dir",
        _pair_data,
        ["model.max_length=64", "task.eval_generations=2", "task.eval_max_new_tokens=4", "generation.max_new_tokens=4"],
        ["good movie", "bad film"],
        _check_generation,
    ),
    "masked_lm": Case(
        "tiny_mlm_dir",
        _text_data,
        ["model.max_length=16"],
        ["good [MASK] movie", "the [MASK] was [MASK]"],
        _check_fills,
    ),
}


def test_every_registered_task_has_a_case():
    assert set(CASES) == set(TASKS)


def _cfg(task: str, tmp: Path, request, *extra: str) -> config.RunConfig:
    case = CASES[task]
    train, dev = case.data(tmp)
    data = case.members(tmp) if case.members else [f"data.train={train}", f"data.dev={dev}"]
    model = request.getfixturevalue(case.model)
    return config.load(
        None,
        [
            f"task={task}",
            f"model.name={model}",
            *data,
            f"output_dir={tmp / 'run'}",
            "train.batch_size=8",
            "train.lr=1e-2",
            "train.precision=fp32",
            "train.log_every=1",
            *case.overrides,
            *extra,
        ],
    )


@pytest.mark.parametrize("name", list(TASKS))
def test_protocol_is_declared_in_full(name):
    task = TASKS[name]
    assert isinstance(task, Task)  # instantiable: every abstract method is implemented
    assert task.Config.model_fields["name"].default == name and task.name == name
    assert len({m.name for m in task.metrics}) == len(task.metrics) and task.metric(None) is task.metrics[0]
    assert all(f.description for k, f in task.Config.model_fields.items() if k != "name")
    assert task.row_kind in ROW_KINDS


def test_registration_refuses_an_undeclared_row_kind():
    class BadKind(type(TASKS["classification"])):
        name = "classification"
        row_kind = "table"

    with pytest.raises(TypeError, match="row_kind must be one of"):
        register(BadKind())


def test_registration_refuses_an_incomplete_task():
    class Half(Task):  # forgets most of the protocol
        name = "half"

    with pytest.raises(TypeError):
        register(Half())


@pytest.mark.parametrize("name", list(TASKS))
def test_bad_metric_is_refused_at_config_time_naming_the_tasks_metrics(name, tmp_path, request):
    with pytest.raises(ConfigError) as err:
        _cfg(name, tmp_path, request, "train.metric=nope")
    assert f"'nope' is not a metric of task {name}" in str(err.value)
    assert ", ".join(m.name for m in TASKS[name].metrics) in str(err.value)


@pytest.mark.parametrize("name", list(TASKS))
def test_forward_once_then_a_pure_summed_loss(name, tmp_path, request):
    """loss(forward(batch)) is a sum over items: two halves add up to the whole; it does not run the model."""
    task = TASKS[name]
    cfg = finetune.resolve(_cfg(name, tmp_path, request), task)
    splits = finetune.read_splits(cfg, task, lambda m: None)
    labels = task.label_space(splits["train"], cfg.data.train)
    tokenizer, model, _ = runs.build_base(cfg, labels)
    prepared = task.prepare(cfg, tokenizer, labels, splits, lambda m: None)
    feats = prepared.features["train"][:6]
    whole, first, second = (prepared.collate(f) for f in (feats, feats[:3], feats[3:]))
    obj = prepared.objective
    with torch.no_grad():
        outputs = obj.forward(model, whole)
        total, n = obj.loss(outputs, whole)
        again, _ = obj.loss(outputs, whole)  # pure: the same outputs give the same loss
        parts = [obj.loss(obj.forward(model, b), b) for b in (first, second)]
    assert n == obj.count(whole) == sum(c for _, c in parts) > 0
    assert float(again) == float(total)
    assert float(total) == pytest.approx(sum(float(x) for x, _ in parts), rel=1e-4)


@pytest.fixture(scope="module", params=list(TASKS))
def trained(request, tmp_path_factory):
    """One 2-step run per task (module scope: the round-trip tests below share it)."""
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    cfg = _cfg(name, tmp, request, "train.max_steps=2")
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    return name, tmp, cfg, final


def test_eval_on_the_dev_file_equals_the_runs_dev_metrics(trained, capsys):
    name, tmp, cfg, final = trained
    member = CASES[name].member
    capsys.readouterr()
    dev = TASKS[name].member_config(cfg, member).data.dev
    assert cli.main(["eval", str(tmp / "run"), "--data", dev, *(["--task", member] if member else [])]) == 0
    metrics = json.loads(capsys.readouterr().out)
    ran = TASKS[name].member_config(cfg, member).task.name
    expected = final["dev"]["tasks"][member] if member else final["dev"]
    for m in TASKS[ran].metrics:  # every declared metric is reported
        assert metrics[m.name] == pytest.approx(expected[m.name], rel=1e-4, abs=1e-6), m.name


def test_predict_and_serve_predict_agree(trained, capsys, monkeypatch):
    import io

    name, tmp, cfg, _ = trained
    case = CASES[name]
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(case.inputs) + "\n"))
    assert cli.main(["predict", str(tmp / "run"), *(["--task", case.member] if case.member else [])]) == 0
    predicted = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert len(predicted) == len(case.inputs)
    for out, line in zip(predicted, case.inputs):
        case.check(out, line)
    from tunelab.serve import registry

    served = registry.load_all([f"m={tmp / 'run'}"], log=lambda m: None)
    with running(served) as base:
        import httpx

        model = f"m:{case.member}" if case.member else "m"  # a multitask run serves each member head
        reply = (
            client(base).post("/predict", body={"model": model, "input": case.inputs}, cast_to=httpx.Response).json()
        )
    assert [{k: v for k, v in d.items() if k not in ("index", "input")} for d in reply["data"]] == predicted


def test_reference_gives_predicts_input_and_the_answer_in_predicts_keys(trained):
    """What the dashboard's sample predictions rely on: a labelled row's input predicts like any input, and its
    answer has the keys (and value types) of the prediction."""
    name, tmp, cfg, _ = trained
    member = CASES[name].member
    cfg = TASKS[name].member_config(cfg, member)
    task = TASKS[cfg.task.name]
    rows = task.read(cfg, cfg.data.dev).rows[:3]
    inputs, answers = zip(*(task.reference(r) for r in rows))
    loaded = runs.load_run(tmp / "run")
    outputs = task.predict(loaded.task.member_run(loaded, member), list(inputs))
    assert len(outputs) == len(rows)
    for answer, out in zip(answers, outputs):
        assert answer and set(answer) <= set(out)
        assert all(type(v) is type(out[k]) for k, v in answer.items())


def test_compare_untrained_baseline_goes_through_the_task(trained, tmp_path):
    name, _, cfg, _ = trained
    row, skipped = compare.untrained_head(cfg, tmp_path, lambda m: None)
    assert row["status"] == "baseline" and isinstance(row["metric"], float) and row["trainable"] == 0
    untuned = (
        "causal_lm",
        "prompt_classification",
        "seq2seq",
        "masked_lm",
        "retrieval",
    )  # no new head: the model as it is
    assert row["method"] == ("untuned model" if name in untuned else "untrained head")
    assert isinstance(skipped, dict)


class DieAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, ctx):
        if ctx.state.step == self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("name", list(TASKS))
def test_resume_is_exact(name, tmp_path, request):
    (tmp_path / "a").mkdir()
    straight = _cfg(name, tmp_path / "a", request, "train.max_steps=4", "train.save_every=1", "model.dropout=0")
    broken = straight.model_copy(update={"output_dir": str(tmp_path / "b" / "run")})
    finetune.run(straight, quiet=True, log=lambda m: None)
    with pytest.raises(KeyboardInterrupt):
        finetune.run(broken, quiet=True, log=lambda m: None, callbacks=(DieAt(2),))
    finetune.run(broken, quiet=True, log=lambda m: None)
    a, _ = checkpoint.load(checkpoint.last_written(Path(straight.output_dir) / "checkpoints"))
    b, _ = checkpoint.load(checkpoint.last_written(Path(broken.output_dir) / "checkpoints"))
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
