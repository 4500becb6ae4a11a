"""`tunelab data clean`: the right rows dropped or changed, everything else copied byte for byte, inputs untouched."""

import hashlib
import json

from tests.data.test_audit import DEV, TRAIN, write_classification
from tunelab import cli


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clean_drops_and_fixes_with_a_log(tmp_path):
    train, dev = write_classification(tmp_path)
    before = digest(train), digest(dev)
    out = tmp_path / "clean"
    fixes = "exact,near,conflicts,unreadable,encoding,leakage"
    assert (
        cli.main(
            ["data", "clean", str(train), str(dev), "data.text_column=sentence", "--out", str(out), "--fix", fixes]
        )
        == 0
    )
    assert (digest(train), digest(dev)) == before
    kept = [TRAIN[0], TRAIN[1], TRAIN[5], "café scenes\t1", TRAIN[10], TRAIN[11]]
    assert (out / "train.tsv").read_text(encoding="utf-8") == "\n".join(kept) + "\n"
    assert (out / "dev.tsv").read_text(encoding="utf-8") == "\n".join([DEV[0], DEV[3]]) + "\n"
    log = [json.loads(x) for x in (out / "changes.jsonl").read_text().splitlines()]
    dropped = {(r["file"].rsplit("/", 1)[1], r["line"]) for r in log if r["action"] == "drop"}
    assert dropped == {("train.tsv", n) for n in (3, 4, 5, 7, 8, 10)} | {("dev.tsv", 2), ("dev.tsv", 3)}
    change = next(r for r in log if r["action"] == "change")
    assert (change["line"], change["before"], change["after"]) == (9, "cafÃ© scenes", "café scenes")
    assert "duplicate with a conflicting label" in (out / "changes.md").read_text()
    assert (out / "audit" / "audit.json").is_file()


def test_whitespace_fix_and_cleaned_file_trains(tmp_path):
    train, dev = write_classification(tmp_path)
    out = tmp_path / "clean"
    assert (
        cli.main(["data", "clean", str(train), "data.text_column=sentence", "--out", str(out), "--fix", "whitespace"])
        == 0
    )
    lines = (out / "train.tsv").read_text().splitlines()
    assert lines[2] == "a great film\t1"  # the trailing space is gone
    assert lines[7] == "   \t1" and lines[9] == "only one column"  # unreadable rows are copied unless --fix unreadable
    from tunelab.data.sources import read_table

    assert len(read_table(str(out / "train.tsv"), text_column="sentence", on_error="skip").rows) == 9


def test_conll_and_jsonl_instruction_clean(tmp_path):
    conll = tmp_path / "ner.conll"
    conll.write_text("a\tO\nb\tB-PER\n\nc\tO\n\na\tO\nb\tB-PER\n\nx\tO\ny\tI-PER\n", encoding="utf-8")
    out = tmp_path / "c1"
    assert cli.main(["data", "clean", str(conll), "--out", str(out)]) == 0
    assert (out / "ner.conll").read_text() == "a\tO\nb\tB-PER\n\nc\tO\n\n"
    jl = tmp_path / "chat.jsonl"
    msgs = lambda q, a: {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "id": q}  # noqa: E731
    jl.write_text(
        "\n".join(json.dumps(m) for m in [msgs("hi", "hello"), msgs("hi", "hello"), msgs("cafÃ©?", "yes")]) + "\n"
    )
    out = tmp_path / "c2"
    assert (
        cli.main(["data", "clean", str(jl), "--out", str(out), "--skip", "lengths,language"]) == 0
    )  # no chat tokenizer
    rows = [json.loads(x) for x in (out / "chat.jsonl").read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in rows] == ["hi", "café?"] and rows[1]["id"] == "cafÃ©?"


def _audit_flagging_line_11(tmp_path):
    """The classification files and an audit.json whose label_errors finding flags train line 11 (given 0,
    suggested 1): (train, audit, finding)."""
    train, _ = write_classification(tmp_path)
    audit = tmp_path / "audit.json"
    finding = {"check": "label_errors", "rows": [{"refs": [f"{train}:11"], "given": "0", "suggested": "1"}]}
    audit.write_text(json.dumps({"findings": [finding]}), encoding="utf-8")
    return train, audit, finding


def test_clean_label_errors_from_an_earlier_audit(tmp_path, capsys):
    train, audit, finding = _audit_flagging_line_11(tmp_path)
    out = tmp_path / "clean"
    args = [
        "data",
        "clean",
        str(train),
        "data.text_column=sentence",
        "--fix",
        "label-errors",
        "--from-audit",
        str(audit),
    ]
    assert cli.main(args + ["--out", str(out)]) == 0
    assert (out / "train.tsv").read_text(encoding="utf-8") == "\n".join(TRAIN[:10] + TRAIN[11:]) + "\n"
    log = [json.loads(x) for x in (out / "changes.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in log] == [(11, "likely label error (given 0, model suggests 1)")]
    finding["rows"][0]["refs"] = ["elsewhere.tsv:3"]
    audit.write_text(json.dumps({"findings": [finding]}), encoding="utf-8")
    assert cli.main(args + ["--out", str(tmp_path / "c2")]) == 2
    assert "its row elsewhere.tsv:3 is not in these inputs" in capsys.readouterr().err


def test_relabel_gives_likely_label_errors_the_probe_label(tmp_path, capsys):
    train, audit, finding = _audit_flagging_line_11(tmp_path)
    out = tmp_path / "clean"
    args = ["data", "clean", str(train), "data.text_column=sentence", "--from-audit", str(audit)]
    assert cli.main(args + ["--fix", "relabel", "--out", str(out)]) == 0
    expected = TRAIN[:10] + ["a plain row about nothing\t1"] + TRAIN[11:]
    assert (out / "train.tsv").read_text(encoding="utf-8") == "\n".join(expected) + "\n"
    log = [json.loads(x) for x in (out / "changes.jsonl").read_text().splitlines()]
    assert [(r["line"], r["action"], r["before"], r["after"]) for r in log] == [(11, "change", "0", "1")]
    assert "relabelled 0 -> 1" in log[0]["reason"]
    # JSONL: an integer label stays an integer, every other key and row is copied
    jl = tmp_path / "rows.jsonl"
    rows = [{"text": f"row {i}", "label": i % 2, "id": i} for i in range(4)]
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    finding["rows"][0]["refs"] = [f"{jl}:3"]
    audit.write_text(json.dumps({"findings": [finding]}), encoding="utf-8")
    out = tmp_path / "clean-jsonl"
    assert cli.main(["data", "clean", str(jl), "--from-audit", str(audit), "--fix", "relabel", "--out", str(out)]) == 0
    got = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert got == rows[:2] + [{"text": "row 2", "label": 1, "id": 2}] + rows[3:]
    assert cli.main(args + ["--fix", "relabel,label-errors", "--out", str(tmp_path / "c3")]) == 2
    assert (
        "label-errors drops the likely label errors and relabel gives them the probe's label" in capsys.readouterr().err
    )
    assert not (tmp_path / "c3").exists()
