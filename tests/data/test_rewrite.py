"""Raw records: same start lines as the readers, untouched records copied byte for byte."""

import json

from tunelab.data import rewrite, sources


def test_csv_records_match_the_reader_and_round_trip(tmp_path):
    text = 'text,label,extra\n"two\nlines",pos,x\r\nplain,neg,"a,b"\n\nlast,pos,z'
    path = tmp_path / "d.csv"
    path.write_bytes(text.encode())
    rf = rewrite.read_raw(str(path), "csv")
    rows = sources.read_table(str(path)).rows
    data = [r for r in rf.records if r.data]
    assert [r.line for r in data] == [1, 2, 4, 6] and [r.line for r in rows] == [2, 4, 6]
    assert data[1].fields == ["two\nlines", "pos", "x"]
    assert rewrite.render(rf, data) == text.replace("\n\n", "\n") + "\n"  # the blank line between records is not data
    changed = rewrite.with_field(rf, data[2], 0, 'say "hi"')
    assert changed.raw == '"say ""hi""",neg,"a,b"\n'
    assert rewrite.render(rf, [data[0], changed]) == 'text,label,extra\n"say ""hi""",neg,"a,b"\n'


def test_jsonl_json_and_conll(tmp_path):
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": 0, "k": [1]}\n', encoding="utf-8")
    rf = rewrite.read_raw(str(jl), "jsonl", "newline")
    assert [(r.line, r.data) for r in rf.records] == [(1, True), (2, False), (3, True)]
    new = rewrite.with_field(rf, rf.records[2], "text", "ü")
    assert json.loads(new.raw) == {"text": "ü", "label": 0, "k": [1]} and new.raw.endswith("\n")
    js = tmp_path / "d.json"
    js.write_text('[\n {"text": "a"},\n\n {"text": "b"}\n]', encoding="utf-8")
    rf = rewrite.read_raw(str(js), "json")
    assert [r.line for r in rf.records] == [2, 4]
    assert json.loads(rewrite.render(rf, rf.records[1:])) == [{"text": "b"}]
    co = tmp_path / "d.conll"
    co.write_text("-DOCSTART- O\n\nen:a\tB-PER\nen:b\tO\n\n\nen:c\tO\n", encoding="utf-8")
    rf = rewrite.read_raw(str(co), "conll")
    data = [r for r in rf.records if r.data]
    assert [r.line for r in data] == [3, 7]
    assert rewrite.render(rf, data[1:]) == "-DOCSTART- O\n\nen:c\tO\n\n"
    assert rewrite.with_lines(data[0], ["x\tO"]).raw == "x\tO\n"


def test_column_index():
    assert rewrite.column_index(["sentence", "label"], "label", True) == 1
    assert rewrite.column_index(["a", "b"], 1, False) == 1
