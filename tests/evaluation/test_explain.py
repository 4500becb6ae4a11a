"""Explanations: rollout and word merging by hand; IG completeness and output shape for every task on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from tunelab import cli, runs
from tunelab.evaluation.explain import attribution, render, targets


def test_rollout_by_hand():
    # one layer, one head: position 1 attends fully to position 0
    a = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    r = attribution.rollout([a])
    assert torch.allclose(r, torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64))
    two = attribution.rollout([a, a])  # (0.5 I + 0.5 A) applied twice
    assert torch.allclose(two[1], torch.tensor([0.75, 0.25], dtype=torch.float64))
    assert torch.allclose(two.sum(-1), torch.ones(2, dtype=torch.float64))


def test_merge_words_sums_pieces():
    text = "unbelievably good"
    offsets = [(0, 0), (0, 2), (2, 12), (13, 17), (0, 0)]  # [CLS] un ##believably good [SEP]
    words = attribution.merge_words(text, offsets, [9.0, 0.1, 0.2, 0.5, 9.0], [1, 0, 0, 0, 1])
    assert [(w["word"], round(w["score"], 6)) for w in words] == [("unbelievably", 0.3), ("good", 0.5)]
    bpe = attribution.merge_words("a cat", [(0, 1), (1, 5)], [1.0, 2.0], [0, 0])  # BPE piece carries its space
    assert [w["word"] for w in bpe] == ["a", "cat"]


def test_terminal_colours_and_plain():
    words = [{"word": "good", "ig": 0.5, "rollout": 0.2}, {"word": "bad", "ig": -0.25, "rollout": 0.1}]
    coloured = render.terminal_words(words, "ig", colour=True)
    assert "\x1b[48;2;60;190;90m" in coloured and "\x1b[0m" in coloured  # full green for the largest positive
    assert render.terminal_words(words, "ig", colour=False) == "good[+0.500] bad[-0.250]"


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory, tiny_bert_dir):
    from tests.conftest import train_tiny

    overrides = ("train.max_steps=8", "train.batch_size=16", "train.lr=1e-2")
    return train_tiny(tmp_path_factory.mktemp("explain-cls"), tiny_bert_dir, *overrides)


def test_classification_ig_completeness(cls_run):
    loaded = runs.load_run(cls_run)
    opts = targets.Options(steps=20, tolerance=0.05)
    for text in ("the movie was great fun", "awful dull plot and a bad actor", "it is not very good"):
        e = targets.classification(loaded, {"text": text}, opts)
        c = e["completeness"]
        assert c["relative_error"] <= 0.05, c
        assert abs(c["sum"] - (c["f_input"] - c["f_baseline"])) <= 0.05 * abs(c["f_input"] - c["f_baseline"]) + 1e-6
        assert [w["word"] for w in e["words"]] == text.split()
        assert c["f_input"] == pytest.approx(e["target_prob"], abs=1e-5)
    other = targets.classification(
        loaded, {"text": "great fun"}, targets.Options(target="0" if e["label"] == "1" else "1")
    )
    assert other["target"] != other["label"]


def test_explain_command_writes_html_and_json(cls_run, tmp_path, capsys):
    out = tmp_path / "expl"
    assert cli.main(["explain", str(cls_run), "--text", "great fun movie", "--color", "always", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "\x1b[48;2;" in printed and "IG sum" in printed
    saved = json.loads((out / "explanations.json").read_text())
    assert saved[0]["kind"] == "classification" and "<span class='w'" in (out / "explanations.html").read_text()


def test_explain_errors_are_one_line(cls_run, capsys):
    assert cli.main(["explain", str(cls_run), "--text", "x", "--target", "maybe"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --target 'maybe': not a label of this run; labels: 0, 1") and err.count("\n") == 1


def test_ner_explains_each_entity(tmp_path, tiny_bert_dir, capsys):
    from tests.tasks.test_token_classification import ner_config
    from tunelab.recipes import finetune

    cfg = ner_config(tmp_path, tiny_bert_dir, "full")
    finetune.run(cfg, quiet=True, log=lambda m: None)
    loaded = runs.load_run(tmp_path / "run")
    e = targets.token_classification(
        loaded, {"text": "the good actor was in the film story"}, targets.Options(steps=16)
    )
    assert e["kind"] == "token_classification" and len(e["tags"]) == 8
    assert e["entities"], e["tags"]
    for ent in e["entities"]:
        assert ent["completeness"]["relative_error"] <= 0.05 and len(ent["words"]) == 8
        assert ent["text"] == e["text"][ent["start"] : ent["end"]]
    assert "<div class='expl'>" in render.html_block(e) and ent["type"] in render.terminal(e, colour=False)
    # NER runs get error analysis too (at the end of training and from eval)
    assert json.loads((tmp_path / "run" / "error_analysis.json").read_text())["length_unit"] == "words"
    assert (
        cli.main(
            [
                "eval",
                str(tmp_path / "run"),
                "--data",
                str(tmp_path / "dev.conll"),
                "--errors",
                str(tmp_path / "e.jsonl"),
            ]
        )
        == 0
    )
    assert (tmp_path / "e.jsonl").is_file()


def test_causal_lm_explains_each_generated_token(tmp_path, tiny_llama_dir, alpaca_writer):
    train = alpaca_writer(tmp_path / "a.json", 16)
    out = tmp_path / "lm"
    assert (
        cli.main(
            [
                "train",
                "--quiet",
                "task=causal_lm",
                f"model.name={tiny_llama_dir}",
                f"data.train={train}",
                f"data.dev={train}",
                f"output_dir={out}",
                "train.max_steps=2",
                "train.batch_size=8",
                "train.precision=fp32",
                "task.eval_generations=0",
                "model.max_length=64",
            ]
        )
        == 0
    )
    loaded = runs.load_run(out)
    e = targets.causal_lm(loaded, {"text": "Say the word good"}, targets.Options(steps=8, max_new_tokens=3))
    assert e["kind"] == "causal_lm" and 1 <= len(e["tokens"]) <= 3
    for i, t in enumerate(e["tokens"]):
        assert len(t["words"]) == e["prompt_tokens"] + i  # the prompt plus the tokens generated before
        c = t["completeness"]
        assert abs(c["sum"] - (c["f_input"] - c["f_baseline"])) <= 0.05 * abs(c["f_input"] - c["f_baseline"]) + 1e-4
    assert "generated token" in render.html_block(e)
