"""task: multitask on the tiny BERT: one shared encoder, a head per member, batches mixed by TaskMixture."""

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import write_sentiment
from tunelab import cli, config, runs
from tunelab.errors import ConfigError, TunelabError
from tunelab.recipes import finetune
from tunelab.tasks import TASKS


def write_genres(path: Path, n: int = 48, seed: int = 0) -> Path:
    """A learnable 3-class toy TSV: the genre word decides the label."""
    import random

    rng = random.Random(seed)
    cues = {"drama": "love", "horror": "awful", "comedy": "fun"}
    lines = ["sentence\tlabel"]
    for i in range(n):
        label = list(cues)[i % 3]
        words = [cues[label]] + rng.sample(["the", "movie", "film", "plot", "was"], 3)
        rng.shuffle(words)
        lines.append(" ".join(words) + f"\t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _overrides(tmp: Path, model: Path, *extra: str) -> list[str]:
    a = write_sentiment(tmp / "a.tsv", n=64), write_sentiment(tmp / "a_dev.tsv", n=16, seed=1)
    b = write_genres(tmp / "b.tsv", n=32), write_genres(tmp / "b_dev.tsv", n=12, seed=1)
    members = (
        f"task.tasks=[{{name: sent, data: {{train: '{a[0]}', dev: '{a[1]}'}}}}, "
        f"{{name: genre, data: {{train: '{b[0]}', dev: '{b[1]}'}}}}]"
    )
    return [
        "task=multitask",
        members,
        "data.text_column=sentence",  # a shared data default under both members
        f"model.name={model}",
        "model.max_length=16",
        "train.batch_size=8",
        "train.lr=1e-2",
        "train.precision=fp32",
        f"output_dir={tmp / 'run'}",
        *extra,
    ]


def _prepared(cfg):
    task = TASKS["multitask"]
    cfg = finetune.resolve(cfg, task)
    splits = finetune.read_splits(cfg, task, lambda m: None)
    labels = task.label_space(splits["train"], "train")
    tokenizer, model, head = runs.build_base(cfg, labels)
    return task, labels, model, head, task.prepare(cfg, tokenizer, labels, splits, lambda m: None)


def test_one_encoder_a_head_per_member_and_batches_of_one_member(tmp_path, tiny_bert_dir):
    cfg = config.load(None, _overrides(tmp_path, tiny_bert_dir))
    task, labels, model, head, prepared = _prepared(cfg)
    assert labels == ["sent:0", "sent:1", "genre:comedy", "genre:drama", "genre:horror"]
    assert head == ["heads.sent.classifier", "heads.genre.classifier"]
    assert model.heads["sent"].classifier.out_features == 2 and model.heads["genre"].classifier.out_features == 3
    assert model.heads["sent"].bert is model.encoder is model.heads["genre"].bert  # shared, registered once
    assert not any(k.startswith("heads.sent.bert") for k in model.state_dict())
    # proportional mixing over a run's batches (64 and 32 training rows)
    plan = [b for epoch in range(30) for b in prepared.sampler.batches(epoch)]
    seen = Counter(prepared.collate([prepared.features["train"][i] for i in b])["task"] for b in plan)
    assert prepared.sampler.weights == pytest.approx([2 / 3, 1 / 3])
    assert seen["sent"] / len(plan) == pytest.approx(2 / 3, abs=0.04)
    with pytest.raises(TunelabError, match="mixes member tasks"):
        prepared.collate([prepared.features["train"][0], prepared.features["train"][-1]])


def test_round_robin_and_temperature_mixing(tmp_path, tiny_bert_dir):
    cfg = config.load(None, _overrides(tmp_path, tiny_bert_dir, "task.mixing=round_robin"))
    *_, prepared = _prepared(cfg)
    names = [prepared.collate([prepared.features["train"][i] for i in b])["task"] for b in prepared.sampler.batches(0)]
    assert names[:4] == ["sent", "genre", "sent", "genre"]
    cfg = config.load(None, _overrides(tmp_path, tiny_bert_dir, "task.mixing=temperature", "task.tau=2"))
    *_, prepared = _prepared(cfg)
    assert prepared.sampler.weights == pytest.approx([64**0.5 / (64**0.5 + 32**0.5), 32**0.5 / (64**0.5 + 32**0.5)])


def test_lora_train_save_reload_and_predict_with_each_head(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    cfg = config.load(None, _overrides(tmp_path, tiny_bert_dir, "train.max_steps=6", "model.dropout=0", "method=lora"))
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    dev = final["dev"]
    assert dev["macro"] == pytest.approx((dev["tasks"]["sent"]["accuracy"] + dev["tasks"]["genre"]["accuracy"]) / 2)
    assert dev["genre/accuracy"] == dev["tasks"]["genre"]["accuracy"]
    run = tmp_path / "run"
    assert json.loads((run / "labels.json").read_text())[:2] == ["sent:0", "sent:1"]
    # the run folder alone rebuilds encoder and both heads: eval through each head equals the run's dev metrics
    for member, dev_file in (("sent", tmp_path / "a_dev.tsv"), ("genre", tmp_path / "b_dev.tsv")):
        capsys.readouterr()
        assert cli.main(["eval", str(run), "--data", str(dev_file), "--task", member]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["accuracy"] == pytest.approx(dev["tasks"][member]["accuracy"])
        assert got["loss"] == pytest.approx(dev["tasks"][member]["loss"], rel=1e-4)
    # predict --task picks that member's head and label names
    for member, names in (("sent", {"0", "1"}), ("genre", {"comedy", "drama", "horror"})):
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", io.StringIO("love the film\nawful plot\n"))
        assert cli.main(["predict", str(run), "--task", member]) == 0
        outs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(outs) == 2 and all(set(o["probs"]) == names for o in outs)
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    assert cli.main(["predict", str(run), "--task", "topic"]) != 0
    assert "not a member of this multitask run; members: sent, genre" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    assert cli.main(["predict", str(run)]) != 0
    assert "pass --task NAME" in capsys.readouterr().err
    # one plain model cannot hold several heads: merge (and quantize, prune, export) say so before any work
    assert cli.main(["merge", str(run), str(tmp_path / "merged")]) == 2
    assert "holds one head per member (sent, genre); merge writes one plain model" in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()


def test_task_flag_on_a_single_task_run_is_refused(tiny_cls_run, capsys):
    assert cli.main(["predict", str(tiny_cls_run), "--task", "sent"]) != 0
    assert "a classification run has no member tasks" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["data.train=x.tsv"], "data.train: a multitask run reads each member's own files"),
        (["task.tasks=[{name: a, data: {dev: x.tsv}}]"], "each member needs its own data.train file"),
        (["task.tasks=[{name: 'a b', data: {train: x.tsv}}]"], "expected letters, digits"),
        (["task.tasks=[{name: a, data: {train: x}}, {name: a, data: {train: y}}]"], "'a' is used twice"),
        (["task.tasks=[{name: a, task: causal_lm, data: {train: x}}]"], "a causal_lm member cannot share"),
        (
            ["task.tasks=[{name: a, task: {name: classification, stride: 3}, data: {train: x}}]"],
            r"task.tasks\[0\] \(a\)",
        ),
        (["task.tasks=[]"], "needs at least one member task"),
    ],
)
def test_bad_multitask_configs_name_the_key(tmp_path, tiny_bert_dir, extra, message):
    base = _overrides(tmp_path, tiny_bert_dir)  # a later task.tasks= replaces the good members
    with pytest.raises(ConfigError, match=message):
        config.load(None, [*base, *extra])
