"""`predict` and `eval` adapt the run's data settings on their command line: flags, data.* overrides, .txt input."""

from __future__ import annotations

import json

import pytest

from tunelab import cli


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_bert_dir):
    from tests.conftest import train_tiny

    return train_tiny(tmp_path_factory.mktemp("inputs"), tiny_bert_dir)


def test_predict_reads_a_txt_file_one_text_per_line(run, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("a good fun movie\n\nan awful dull plot\n")
    capsys.readouterr()
    assert cli.main(["predict", str(run), "--data", str(texts)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == ["a good fun movie", "an awful dull plot"] and all(
        x["label"] in ("0", "1") for x in lines
    )


def test_predict_flags_read_a_headerless_semicolon_latin1_file(run, tmp_path, capsys):
    src = tmp_path / "reviews.csv"
    src.write_bytes("7;a good fun movie caf\xe9\n8;an awful dull plot\n".encode("latin-1"))
    capsys.readouterr()
    assert (
        cli.main(
            [
                "predict",
                str(run),
                "--data",
                str(src),
                "--delimiter",
                ";",
                "--text-column",
                "1",
                "--encoding",
                "latin-1",
                "data.has_header=false",
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == ["a good fun movie café", "an awful dull plot"]


def test_eval_with_other_columns_and_the_same_metrics_as_the_run_layout(run, tmp_path, capsys):
    from tests.conftest import write_sentiment

    tsv = write_sentiment(tmp_path / "dev.tsv", n=16, seed=3)
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
    other = tmp_path / "dev.csv"
    other.write_text("stars,review\n" + "".join(f"{label},{text}\n" for text, label in rows))
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--data", str(tsv)]) == 0
    same_layout = json.loads(capsys.readouterr().out)
    assert cli.main(["eval", str(run), "--data", str(other), "--text-column", "review", "--label-column", "stars"]) == 0
    adapted = json.loads(capsys.readouterr().out)
    assert adapted["accuracy"] == same_layout["accuracy"] and adapted["confusion"] == same_layout["confusion"]
    assert cli.main(["eval", str(run), "--data", str(other), "data.text_column=review", "data.label_column=stars"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == same_layout["accuracy"]
