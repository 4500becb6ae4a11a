"""The command line: train/eval/predict/info/config on a tiny model; errors are one line and exit 2."""

from __future__ import annotations

import io
import json
import sys

import pytest

from tunelab import cli


def _train(tmp_path, tiny_bert_dir, sentiment_tsv, *extra):
    out = tmp_path / "run"
    code = cli.main(
        [
            "train",
            "--quiet",
            f"model.name={tiny_bert_dir}",
            f"data.train={sentiment_tsv}",
            "data.text_column=sentence",
            "train.max_steps=2",
            "train.batch_size=8",
            f"output_dir={out}",
            *extra,
        ]
    )
    assert code == 0
    return out


def test_train_then_predict_eval_roundtrip(tmp_path, tiny_bert_dir, sentiment_tsv, capsys, monkeypatch):
    out = _train(tmp_path, tiny_bert_dir, sentiment_tsv, "method=lora")
    for name in (
        "config.yaml",
        "metrics.json",
        "metrics.jsonl",
        "report.md",
        "training.png",
        "labels.json",
        "model/adapter_model.safetensors",
    ):
        assert (out / name).exists(), name
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO('good fun movie\n{"text": "awful dull plot"}\n\n'))
    assert cli.main(["predict", str(out)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and lines[1]["text"] == "awful dull plot"
    for line in lines:
        assert line["label"] in ("0", "1") and abs(sum(line["probs"].values()) - 1) < 1e-4
    assert cli.main(["eval", str(out), "--data", str(sentiment_tsv)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["accuracy"] <= 1 and len(metrics["confusion"]) == 2
    # predictions from the reloaded run equal the dev metrics the run recorded
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["steps"] == 2 and saved["trainable_parameters"] < saved["total_parameters"]


def test_predict_from_file_and_finished_run_is_never_overwritten(tmp_path, tiny_bert_dir, sentiment_tsv, capsys):
    out = _train(tmp_path, tiny_bert_dir, sentiment_tsv)
    before = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert cli.main(["predict", str(out), "--data", str(sentiment_tsv)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 64
    code = cli.main(
        [
            "train",
            "--quiet",
            f"model.name={tiny_bert_dir}",
            f"data.train={sentiment_tsv}",
            "data.text_column=sentence",
            f"output_dir={out}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "already holds a finished run" in err and err.count("\n") == 1
    assert (out / "metrics.json").read_text() == before


def test_resume_with_changed_config_is_refused(tmp_path, tiny_bert_dir, sentiment_tsv, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(f"model:\n  name: {tiny_bert_dir}\ntrain:\n  lr: 0.1\n")
    code = cli.main(
        ["train", "--quiet", f"model.name={tiny_bert_dir}", f"data.train={sentiment_tsv}", f"output_dir={out}"]
    )
    assert code == 2 and "different config" in capsys.readouterr().err


def test_foreign_folder_is_refused(tmp_path, tiny_bert_dir, sentiment_tsv, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    code = cli.main(
        ["train", f"model.name={tiny_bert_dir}", f"data.train={sentiment_tsv}", f"output_dir={tmp_path / 'mine'}"]
    )
    assert code == 2 and "not a tunelab run folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "train.lrr=1"], "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
        (["train", "model.name=./no/such/model"], "model './no/such/model': no such directory or file"),
        (["predict", "/nonexistent/run"], "not a tunelab run folder"),
    ],
)
def test_errors_are_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_data_errors_reach_the_user_with_file_and_line(tmp_path, tiny_bert_dir, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\ngood movie\t1\n\t0\n")
    code = cli.main(
        [
            "train",
            "--quiet",
            f"model.name={tiny_bert_dir}",
            f"data.train={bad}",
            "data.text_column=sentence",
            f"output_dir={tmp_path / 'r'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:3:" in err and "non-empty text" in err


def test_single_class_and_unseen_label(tmp_path, tiny_bert_dir, sentiment_tsv, capsys):
    one = tmp_path / "one.tsv"
    one.write_text("sentence\tlabel\n" + "good movie\t1\n" * 10)
    assert (
        cli.main(
            [
                "train",
                "--quiet",
                f"model.name={tiny_bert_dir}",
                f"data.train={one}",
                "data.text_column=sentence",
                f"output_dir={tmp_path / 'a'}",
            ]
        )
        == 2
    )
    assert "only one class ('1')" in capsys.readouterr().err
    out = _train(tmp_path, tiny_bert_dir, sentiment_tsv)
    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\ngood movie\t1\nso so\tneutral\n")
    assert cli.main(["eval", str(out), "--data", str(dev)]) == 2
    assert f"{dev}:3: label 'neutral' was not seen in training; known labels: 0, 1" in capsys.readouterr().err


def test_info_counts_trainable_parameters(tiny_bert_dir, capsys):
    assert cli.main(["info", str(tiny_bert_dir), "--method", "freeze", "--set", "method.layers=1"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layers"] == 2 and info["task_head"] == ["classifier"]
    assert 0 < info["trainable_parameters"] < info["parameters"]
    assert cli.main(["info", str(tiny_bert_dir), "--method", "full"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full["trainable_parameters"] == full["parameters"]


def test_config_command_and_train_help_list_every_key(capsys):
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert "train.lr" in out and "data.on_error" in out and "method.r  [lora]" in out
    assert cli.main(["config", "--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| key | default | description |" and any(
        r.startswith("| `train.lr`") and "Peak learning rate." in r for r in table
    )
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "train.warmup_fraction" in capsys.readouterr().out


def test_skip_bad_rows_reports_lines(tmp_path, tiny_bert_dir, sentiment_tsv, capsys):
    text = sentiment_tsv.read_text().splitlines()
    text.insert(3, "\t1")
    text.insert(6, "too\tmany\tcolumns")
    bad = tmp_path / "bad.tsv"
    bad.write_text("\n".join(text) + "\n")
    code = cli.main(
        [
            "train",
            "--quiet",
            f"model.name={tiny_bert_dir}",
            f"data.train={bad}",
            "data.text_column=sentence",
            "data.on_error=skip",
            "train.max_steps=1",
            f"output_dir={tmp_path / 'r'}",
        ]
    )
    assert code == 0
    assert "skipped 2 bad rows (lines 4, 7)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, held, expected",
    [
        (["compare", "c.yaml", "--methods", "lora", "train.epochs=1"], "config", ["c.yaml", "train.epochs=1"]),
        (["train", "c.yaml", "--quiet", "train.lr=1e-4"], "config", ["c.yaml", "train.lr=1e-4"]),
    ],
)
def test_overrides_may_follow_the_options(argv, held, expected):
    """`tunelab compare cfg.yaml --methods lora train.epochs=1` was refused as "unrecognized arguments"."""
    args = cli._parse(cli.build_parser(), argv)
    assert getattr(args, held) == expected


def test_a_stray_word_after_the_options_is_still_refused(capsys):
    with pytest.raises(SystemExit):
        cli._parse(cli.build_parser(), ["compare", "c.yaml", "--methods", "lora", "oops"])
    assert "unrecognized arguments: oops" in capsys.readouterr().err
