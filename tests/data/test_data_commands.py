"""The data commands' shared rules (output folder, file:line errors) and the augment and split commands end to end."""

import json
from collections import Counter

import pytest

from tests.data.test_audit import write_classification
from tunelab import cli
from tunelab.data import conll, lexicon
from tunelab.data import corpus as inputs
from tunelab.data.sources import read_table
from tunelab.errors import ConfigError


@pytest.mark.parametrize("command", ["audit", "clean", "scrub", "augment"])
def test_refuses_a_non_empty_or_file_out_and_bad_input(tmp_path, command, capsys):
    train, _ = write_classification(tmp_path)
    base = ["data", command, str(train), "data.text_column=sentence"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    assert cli.main(base + ["--out", str(tmp_path / "full")]) == 2
    assert "--out is not empty" in capsys.readouterr().err and (tmp_path / "full" / "x").read_text() == "keep me"
    assert cli.main(base + ["--out", str(train)]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    before = train.read_bytes()
    assert cli.main(["data", command, str(train), "--out", str(tmp_path / "new")]) == 2  # no 'text' column
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {train}:1: text_column: expected a column 'text'")
        and "did you mean" not in err
        or "sentence" in err
    )
    assert train.read_bytes() == before and not (tmp_path / "new").exists()


def test_input_parsing_and_task_guess(tmp_path):
    assert inputs.parse_args(["a.yaml", "x=1"]) == ("a.yaml", [], ["x=1"])
    assert inputs.parse_args(["t.tsv", "d.tsv", "data.text_column=s"]) == (
        None,
        ["t.tsv", "d.tsv"],
        ["data.text_column=s"],
    )
    (tmp_path / "a.json").write_text('[{"instruction": "x", "output": "y"}]')
    (tmp_path / "n.jsonl").write_text('{"tokens": ["a"], "tags": ["O"]}\n')
    (tmp_path / "wikiann").write_text("a\tO\n")
    assert [inputs.guess_task(str(tmp_path / n)) for n in ("a.json", "n.jsonl", "wikiann")] == [
        "causal_lm",
        "token_classification",
        "token_classification",
    ]
    assert inputs.guess_task("x.tsv") == "classification"
    with pytest.raises(ConfigError, match="at most 3 data files"):
        inputs.load(["a.tsv", "b.tsv", "c.tsv", "d.tsv"])
    with pytest.raises(ConfigError, match="no data"):
        inputs.load(["data.text_column=x"])


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    train, _ = write_classification(tmp_path)
    base = ["data", "audit", str(train), "data.text_column=sentence", "--out", str(tmp_path / "o")]
    assert cli.main(base + ["--skip", "dupes"]) == 2
    assert "--skip: unknown check 'dupes'" in capsys.readouterr().err
    assert (
        cli.main(
            ["data", "clean", str(train), "data.text_column=sentence", "--out", str(tmp_path / "o"), "--fix", "all"]
        )
        == 2
    )
    assert "--fix: unknown fix 'all'" in capsys.readouterr().err
    assert cli.main(["data", "audit", str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.tsv: file not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_augment_classification_keeps_originals(tmp_path):
    train, _ = write_classification(tmp_path)
    out = tmp_path / "aug"
    assert (
        cli.main(
            [
                "data",
                "augment",
                str(train),
                "data.text_column=sentence",
                "--out",
                str(out),
                "--copies",
                "2",
                "--ops",
                "swap,delete",
                "--synonyms",
                "embedding",
            ]
        )
        == 0
    )
    original = train.read_text(encoding="utf-8")
    result = (out / "train.tsv").read_text(encoding="utf-8")
    assert result.startswith(original)  # every original line, unchanged and first
    rows = read_table(str(out / "train.tsv"), text_column="sentence", on_error="skip").rows
    assert len(rows) == 9 + 18
    log = [json.loads(x) for x in (out / "augment.jsonl").read_text().splitlines()]
    assert Counter(r["op"] for r in log) == {"swap": 9, "delete": 9}
    by_line = {r.line: r for r in read_table(str(train), text_column="sentence", on_error="skip").rows}
    for row, entry in zip(rows[9:], log):
        assert row.label == by_line[int(entry["source"].rsplit(":", 1)[1])].label  # labels preserved


def test_augment_ner_with_entity_swap(tmp_path):
    src = tmp_path / "ner.conll"
    src.write_text(
        "en:Ann\tB-PER\nen:met\tO\nen:Bo\tB-PER\n\nen:Cy\tB-PER\nen:Lee\tI-PER\nen:left\tO\n", encoding="utf-8"
    )
    out = tmp_path / "aug"
    assert (
        cli.main(["data", "augment", str(src), 'task.token_prefix="en:"', "--ops", "entity-swap", "--out", str(out)])
        == 0
    )
    text = (out / "ner.conll").read_text()
    assert text.startswith(src.read_text()) and all(line.startswith("en:") for line in text.splitlines() if line)
    table = conll.read(str(out / "ner.conll"), "conll", conll.Options(token_prefix="en:"))
    assert len(table.rows) == 4 and all(r.tags.count("B-PER") >= 1 for r in table.rows)
    assert table.rows[3].tokens[-1] == "left" and table.rows[3].tokens[:-1] in (["Ann"], ["Bo"])


@pytest.mark.skipif(
    not any(lexicon.Path(d, "data.noun").is_file() for d in lexicon.DEFAULT_DIRS),
    reason="WordNet data files absent (make wordnet installs Debian's wordnet-base)",
)
def test_augment_with_wordnet_synonyms(tmp_path):
    src = tmp_path / "t.tsv"
    src.write_text("text\tlabel\na funny movie\t1\na boring film\t0\n", encoding="utf-8")
    out = tmp_path / "aug"
    assert cli.main(["data", "augment", str(src), "--ops", "synonym", "--out", str(out), "--alpha", "0.5"]) == 0
    new = (out / "t.tsv").read_text().splitlines()[3:]
    assert len(new) == 2 and all(a != b for a, b in zip(new, ["a funny movie\t1", "a boring film\t0"]))


def test_split_grouped_and_deduplicated(tmp_path):
    rows = ["id,text,label,user"] + [f"{i},text number {i} about things,{'ab'[i % 2]},u{i // 4}" for i in range(40)]
    rows += ["40,text number 1 about things,b,u99"]  # an exact duplicate of row 1 with another user
    src = tmp_path / "d.csv"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "s"
    assert (
        cli.main(
            [
                "data",
                "split",
                str(src),
                "--out",
                str(out),
                "--group-by",
                "user",
                "--dedupe",
                "--fractions",
                "0.6,0.2,0.2",
            ]
        )
        == 0
    )
    where = {}
    for name in ("train", "dev", "test"):
        lines = (out / f"{name}.csv").read_text().splitlines()
        assert lines[0] == rows[0]
        for line in lines[1:]:
            where[line.split(",")[0]] = name
    assert len(where) == 41
    users = {}
    for line in rows[1:]:
        users.setdefault(line.split(",")[3], set()).add(where[line.split(",")[0]])
    assert all(len(s) == 1 for s in users.values())  # no user in two splits
    assert where["40"] == where["1"]  # duplicates stay together
    summary = json.loads((out / "split.json").read_text())
    assert sum(s["rows"] for s in summary["splits"].values()) == 41


def test_augment_paraphrase_plumbing_with_a_tiny_lm(tmp_path, tiny_llama_dir):
    src = tmp_path / "t.tsv"
    src.write_text("text\tlabel\na funny movie\t1\na boring film\t0\nwhat a joy\t1\n", encoding="utf-8")
    out = tmp_path / "aug"
    assert (
        cli.main(
            [
                "data",
                "augment",
                str(src),
                "--ops",
                "paraphrase",
                "--paraphrase-model",
                str(tiny_llama_dir),
                "--filter",
                "none",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    log = [json.loads(x) for x in (out / "augment.jsonl").read_text().splitlines()]
    rows = read_table(str(out / "t.tsv"), on_error="skip").rows
    assert len(rows) == 3 + len(log) and all(r["op"] == "paraphrase" and r["text"] for r in log)
    assert {r.label for r in rows[3:]} <= {"0", "1"}


def test_paraphrase_filter_asks_a_classification_run_through_the_task_protocol(tmp_path, tiny_bert_dir):
    """--filter RUN_DIR keeps a paraphrase only when the run predicts its row's label; other runs are refused."""
    from tests.conftest import write_sentiment
    from tunelab import config
    from tunelab.data import augment
    from tunelab.errors import TunelabError
    from tunelab.recipes import finetune

    cfg = config.load(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            f"model.name={tiny_bert_dir}",
            f"data.train={write_sentiment(tmp_path / 's.tsv', n=96)}",
            "data.text_column=sentence",
            "train.epochs=8",
            "train.batch_size=16",
            "train.lr=5e-3",
            "train.precision=fp32",
            "model.max_length=16",
        ],
    )
    finetune.run(cfg, quiet=True, log=lambda m: None)
    texts = ["good great love fun", "bad awful hate dull"]
    assert augment.label_agreement(texts, ["1", "0"], [], str(tmp_path / "run")) == [True, True]
    assert augment.label_agreement(texts, ["0", "1"], [], str(tmp_path / "run")) == [False, False]
    (tmp_path / "n.conll").write_text("ann\tB-PER\nmet\tO\n\nbo\tB-PER\nleft\tO\n" * 4, encoding="utf-8")
    cfg = config.load(
        None,
        [
            "task=token_classification",
            f"output_dir={tmp_path / 'ner'}",
            f"model.name={tiny_bert_dir}",
            f"data.train={tmp_path / 'n.conll'}",
            "train.max_steps=1",
            "model.max_length=16",
        ],
    )
    finetune.run(cfg, quiet=True, log=lambda m: None)
    with pytest.raises(TunelabError, match="--filter needs a classification run, found a token_classification run"):
        augment.label_agreement(texts, ["1", "0"], [], str(tmp_path / "ner"))
