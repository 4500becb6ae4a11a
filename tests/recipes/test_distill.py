"""`tunelab distill` on tiny models: classification (+ unlabelled text, hidden states), NER per token, causal LM per
token chunked; the cached teacher targets; resume; clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from tunelab import cli, runs
from tunelab.errors import ConfigError, ModelError, TunelabError
from tunelab.recipes import distill, distill_run
from tunelab.training.callbacks import Callback


def cls_args(tmp_path, tiny_bert_dir, teacher, *extra):
    from tests.conftest import write_sentiment

    train = write_sentiment(tmp_path / "train.tsv", n=48)
    return [
        f"model.name={tiny_bert_dir}",
        "model.layers=[1]",
        f"data.train={train}",
        "data.text_column=sentence",
        "train.batch_size=8",
        "train.lr=1e-3",
        "speed.cache=false",
        f"distill.teacher={teacher}",
        *extra,
    ]


class DieAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, ctx):
        if ctx.state.step == self.step:
            raise KeyboardInterrupt


def test_classification_distill_with_unlabelled_text_hidden_states_and_report(tmp_path, tiny_bert_dir, tiny_cls_run):
    unlabelled = tmp_path / "more.tsv"
    unlabelled.write_text("sentence\n" + "\n".join(["good fun film", "awful dull plot", "the movie"] * 4) + "\n")
    out = tmp_path / "run"
    args = cls_args(tmp_path, tiny_bert_dir, tiny_cls_run, f"distill.unlabelled={unlabelled}", "distill.hidden=mse")
    assert cli.main(["distill", "--quiet", *args, "train.max_steps=4", f"output_dir={out}"]) == 0
    final = json.loads((out / "metrics.json").read_text())
    info = final["distill"]
    # 48 rows: 44 train after the 10% dev split, + 12 unlabelled rows; one item per example
    assert info["teacher_items"] == 44 + 12
    assert info["student_parameters"] < info["teacher_parameters"]
    assert set(info["teacher_dev"]) >= {"accuracy", "loss"}
    assert "## Teacher vs student" in (out / "report.md").read_text()
    targets = torch.load(out / distill.TARGETS_FILE, weights_only=True)
    assert targets["values"].shape == (56, 2) and targets["pooled"].shape == (56, 32)
    # the student is rebuilt from the run folder alone: 1 layer of the tiny BERT
    run = runs.load_run(out)
    assert run.model.config.num_hidden_layers == 1 and len(run.model.bert.encoder.layer) == 1
    assert run.task.predict(run, run.task.parse_inputs(["good fun"], "stdin"))[0]["label"] in ("0", "1")


def test_teacher_targets_are_cached_and_resume_equals_uninterrupted(tmp_path, tiny_bert_dir, tiny_cls_run):
    args = cls_args(tmp_path, tiny_bert_dir, tiny_cls_run, "train.max_steps=6", "train.save_every=2")
    straight = tmp_path / "straight"
    distill.run(None, [*args, f"output_dir={straight}"], quiet=True, log=lambda m: None)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        distill.run(None, [*args, f"output_dir={out}"], quiet=True, log=lambda m: None, callbacks=(DieAt(3),))
    calls = []
    real = distill_run.teacher_targets
    lines = []
    try:
        distill_run.teacher_targets = lambda *a: calls.append(1) or real(*a)
        distill.run(None, [*args, f"output_dir={out}"], quiet=True, log=lines.append)
    finally:
        distill_run.teacher_targets = real
    assert not calls, "the resumed run recomputed the teacher's targets"
    assert any("(cached)" in line for line in lines) and any("resumed from" in line for line in lines)
    a, b = runs.load_run(straight).model, runs.load_run(out).model
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.allclose(p, q, atol=1e-6), name
    # another distill section on the same folder is refused (naming the key), not silently mixed
    with pytest.raises(TunelabError, match=r"distill.alpha: 0.5 -> 0.9"):
        (out / "metrics.json").unlink()
        distill.run(None, [*args, f"output_dir={out}", "distill.alpha=0.9"], quiet=True, log=lambda m: None)


def test_ner_distills_per_token_from_a_plain_model_teacher(tmp_path, tiny_bert_dir):
    from tests.tasks.test_token_classification import write_ner

    train = write_ner(tmp_path / "train.conll")
    out = tmp_path / "run"
    lines = []
    final = distill.run(
        None,
        [
            "task=token_classification",
            f"model.name={tiny_bert_dir}",
            "model.layers=[0]",
            f"data.train={train}",
            "train.max_steps=2",
            "train.batch_size=8",
            "speed.cache=false",
            f"distill.teacher={tiny_bert_dir}",
            "distill.divergence=jsd",
            f"output_dir={out}",
        ],
        quiet=True,
        log=lines.append,
    )
    targets = torch.load(out / distill.TARGETS_FILE, weights_only=True)
    words = final["distill"]["teacher_items"]
    assert words == targets["values"].shape[0] > 40  # one item per labelled word
    assert any("no trained" in line for line in lines)  # a plain model's head is random: said so


def test_causal_lm_distills_per_token_top_k_without_full_logits(tmp_path, tiny_llama_dir, tiny_lm_run, alpaca_writer):
    data = alpaca_writer(tmp_path / "alpaca.json", n=16)
    out = tmp_path / "run"
    final = distill.run(
        None,
        [
            "task=causal_lm",
            f"model.name={tiny_llama_dir}",
            "model.layers=[1]",
            f"data.train={data}",
            "model.max_length=64",
            "task.eval_generations=0",
            "train.max_steps=2",
            "train.batch_size=4",
            "speed.cache=false",
            "speed.ce_chunk=16",
            f"distill.teacher={tiny_lm_run}",
            "distill.top_k=8",
            "distill.divergence=reverse_kl",
            f"output_dir={out}",
        ],
        quiet=True,
        log=lambda m: None,
    )
    targets = torch.load(out / distill.TARGETS_FILE, weights_only=True)
    assert targets["values"].shape[1] == 8 and targets["values"].shape[0] == final["distill"]["teacher_items"] > 20
    assert runs.load_run(out).model.config.num_hidden_layers == 1


def test_config_errors_name_the_key(tmp_path, tiny_bert_dir, tiny_cls_run, capsys):
    with pytest.raises(ConfigError, match=r"distill.alhpa: unknown key; did you mean distill.alpha\?"):
        distill.load(None, [f"distill.teacher={tiny_cls_run}", "distill.alhpa=0.3"])
    with pytest.raises(ConfigError, match="needs a distill: section"):
        distill.load(None, ["train.lr=1e-3"])
    with pytest.raises(ConfigError, match="distill.temperature"):
        distill.load(None, [f"distill.teacher={tiny_cls_run}", "distill.temperature=0"])
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"distill:\n  teacher: {tiny_cls_run}\n")
    assert cli.main(["train", str(config_file)]) == 2
    assert "read by `tunelab distill CONFIG`" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"model.layers: \[0, 5\]: the model has layers 0..1"):
        from transformers import AutoModel

        from tunelab.models.layers import keep_layers

        keep_layers(AutoModel.from_pretrained(str(tiny_bert_dir)), [0, 5])


def test_a_missing_teacher_is_named_before_any_run_folder_is_made(tmp_path, tiny_bert_dir):
    out = tmp_path / "run"
    with pytest.raises(TunelabError, match=r"distill.teacher .*nope: no such run folder"):
        distill.run(None, cls_args(tmp_path, tiny_bert_dir, tmp_path / "nope", f"output_dir={out}"), log=print)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("task: classification\n")
    with pytest.raises(TunelabError, match="distill.teacher: .*run has no saved model yet"):
        distill.run(None, cls_args(tmp_path, tiny_bert_dir, tmp_path / "half", f"output_dir={out}"), log=print)
    assert not out.exists()


def test_different_tokenizers_are_refused(tiny_bert_dir, tiny_llama_dir):
    from tunelab.models import load as model_load

    bert = model_load.load_tokenizer(model_load.resolve(str(tiny_bert_dir)))
    llama = model_load.load_tokenizer(model_load.resolve(str(tiny_llama_dir)))
    with pytest.raises(ModelError, match="tokenizer differs from the student's"):
        distill.check_tokenizers(llama, bert, "teacher-run")
    distill.check_tokenizers(bert, bert, "same")


def test_labels_of_teacher_and_student_must_agree(tmp_path, tiny_bert_dir, tiny_cls_run):
    data = tmp_path / "three.tsv"
    data.write_text("sentence\tlabel\n" + "\n".join(f"good film {i}\t{i % 3}" for i in range(30)) + "\n")
    args = cls_args(tmp_path, tiny_bert_dir, tiny_cls_run, f"data.train={data}", f"output_dir={tmp_path / 'r'}")
    with pytest.raises(TunelabError, match=r"labels \['0', '1'\] differ from the student's training labels"):
        distill.run(None, args, quiet=True, log=lambda m: None)


def test_hidden_matching_learns_a_projection_when_widths_differ_and_checkpoints_it(
    tmp_path, tiny_bert_dir, tiny_cls_run
):
    from transformers import BertConfig, BertModel, BertTokenizer

    narrow = tmp_path / "narrow-bert"
    tok = BertTokenizer.from_pretrained(str(tiny_bert_dir))
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(str(narrow))
    tok.save_pretrained(str(narrow))
    out = tmp_path / "run"
    args = cls_args(tmp_path, tiny_bert_dir, tiny_cls_run, f"model.name={narrow}", "model.layers=null")
    args += ["distill.hidden=cosine", "train.max_steps=3", "train.keep_checkpoints=all", f"output_dir={out}"]
    distill.run(None, args, quiet=True, log=lambda m: None)
    extra = torch.load(out / "checkpoints" / "step-3" / "state.pt", weights_only=False)
    state = extra["callbacks"]["ModuleState"]
    assert state["weight"].shape == (32, 16)  # student width 16 -> teacher width 32, trained with the student
