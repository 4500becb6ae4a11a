import json

import pytest

from tunelab.data import conll
from tunelab.errors import DataError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def read(path, **kw):
    return conll.read(path, opts=conll.Options(**kw))


def test_conll_tab_spaces_docstart_and_bom(tmp_path):
    text = (
        "\ufeff-DOCSTART- -X- O O\n\nJohn NNP B-NP B-PER\nSmith NNP I-NP I-PER\nran VBD B-VP O\n\n"
        "Paris\tB-LOC\n.\tO\n\ufeff\n"
    )
    table = read(write(tmp_path, "a.conll", text))
    assert [r.tokens for r in table.rows] == [["John", "Smith", "ran"], ["Paris", "."]]
    assert [r.tags for r in table.rows] == [["B-PER", "I-PER", "O"], ["B-LOC", "O"]]
    assert [r.line for r in table.rows] == [3, 7]
    assert table.rows[0].text == "John Smith ran" and table.rows[0].offsets[1] == (5, 10)


def test_conll_tag_column_and_token_prefix(tmp_path):
    path = write(tmp_path, "b", "en:John B-PER NNP\nen:Smith I-PER NNP\nen:en: O NNP\n")
    table = read(path, tag_column=1, token_prefix="en:")
    assert table.rows[0].tokens == ["John", "Smith", "en:"]  # a token that is only the prefix is kept
    assert table.rows[0].tags == ["B-PER", "I-PER", "O"]


def test_conll_schemes_convert_to_iob2(tmp_path):
    iob1 = read(write(tmp_path, "c", "John I-PER\nSmith I-PER\nMary B-PER\n"), tag_scheme="iob1")
    assert iob1.rows[0].tags == ["B-PER", "I-PER", "B-PER"]
    bioes = read(write(tmp_path, "d", "New B-LOC\nYork E-LOC\nis O\nbig S-MISC\n"), tag_scheme="bioes")
    assert bioes.rows[0].tags == ["B-LOC", "I-LOC", "O", "B-MISC"]


def test_invalid_sequence_names_file_and_line(tmp_path):
    path = write(tmp_path, "e.conll", "a O\n\nthe O\nJohn I-PER\n")
    with pytest.raises(
        DataError, match=r"e\.conll:4: invalid tag sequence \(iob2\): 'I-PER' follows 'O'; .*task\.repair_tags: true"
    ):
        read(path)
    table = read(path, repair_tags=True)
    assert table.rows[1].tags == ["O", "B-PER"] and table.repaired == 1


def test_conll_errors(tmp_path):
    with pytest.raises(
        DataError, match=r"f:2: expected a token and a tag separated by TAB or spaces, got one column \('Smith'\)"
    ):
        read(write(tmp_path, "f", "John B-PER\nSmith\n"))
    with pytest.raises(DataError, match=r"g:1: task.tag_column 3 is out of range: the line has 2 columns"):
        read(write(tmp_path, "g", "John B-PER\n"), tag_column=3)
    with pytest.raises(
        DataError, match=r"h:2: tag 'E-PER' has prefix 'E', which scheme iob2 does not use.*task.tag_scheme"
    ):
        read(write(tmp_path, "h", "John B-PER\nSmith E-PER\n"))
    with pytest.raises(DataError, match=r"i: no sentences found"):
        read(write(tmp_path, "i", "\n\n"))
    with pytest.raises(DataError, match="file not found"):
        read(str(tmp_path / "missing.conll"))


def test_on_error_skip_reports_lines(tmp_path):
    table = read(write(tmp_path, "j", "a O\n\nb I-X\n\nc B-X\n"), on_error="skip")
    assert [r.tokens for r in table.rows] == [["a"], ["c"]]
    assert [line for line, _ in table.skipped] == [3]


def test_jsonl_tokens(tmp_path):
    lines = [{"tokens": ["Ada", "Lovelace", "wrote"], "tags": ["B-PER", "I-PER", "O"]}]
    table = read(write(tmp_path, "k.jsonl", "\n".join(json.dumps(x) for x in lines)))
    assert table.rows[0].tags == ["B-PER", "I-PER", "O"] and table.rows[0].text == "Ada Lovelace wrote"


def test_jsonl_spans_cut_tokens_at_span_edges(tmp_path):
    text = "Visit New-York, said Ada."
    obj = {"text": text, "spans": [{"start": 6, "end": 14, "label": "LOC"}, {"start": 21, "end": 24, "label": "PER"}]}
    row = read(write(tmp_path, "l.jsonl", json.dumps(obj))).rows[0]
    assert row.tokens == ["Visit", "New", "-", "York", ",", "said", "Ada", "."]
    assert row.tags == ["O", "B-LOC", "I-LOC", "I-LOC", "O", "O", "B-PER", "O"]
    assert [text[a:b] for a, b in row.offsets] == row.tokens
    # a span ending inside a word cuts the word there
    row = read(
        write(tmp_path, "m.jsonl", json.dumps({"text": "McDonalds", "spans": [{"start": 0, "end": 2, "label": "X"}]}))
    ).rows[0]
    assert row.tokens == ["Mc", "Donalds"] and row.tags == ["B-X", "O"]


@pytest.mark.parametrize(
    "obj, message",
    [
        ("{not json", r"n.jsonl:1: not valid JSON"),
        ({"words": []}, r"n.jsonl:1: expected \"tokens\" \(with \"tags\"\) or \"text\" \(with \"spans\"\)"),
        ({"tokens": ["a", "b"], "tags": ["O"]}, r"n.jsonl:1: 2 tokens but 1 tags; expected one tag per token"),
        ({"tokens": [], "tags": []}, r"\"tokens\" must be a non-empty list"),
        ({"tokens": ["a"], "tags": "O"}, r"\"tags\" must be a list of strings"),
        (
            {"text": "abc", "spans": [{"start": 0, "end": 9, "label": "X"}]},
            r"0 <= start < end <= 3 \(text length\); got 0-9",
        ),
        ({"text": "abc", "spans": [{"start": 0, "end": 2}]}, r"each span needs \"start\", \"end\" and \"label\""),
        ({"text": "a  b", "spans": [{"start": 1, "end": 3, "label": "X"}]}, r"span 1-3 \(X\) covers no word"),
        (
            {"text": "abc", "spans": [{"start": 0, "end": 2, "label": "B-X"}]},
            r"span label must be an entity type such as PER",
        ),
        (
            {"text": "a b c", "spans": [{"start": 0, "end": 3, "label": "X"}, {"start": 2, "end": 5, "label": "Y"}]},
            r"overlaps another entity",
        ),
        ({"text": "abc"}, r"\"spans\" must be a list"),
    ],
)
def test_jsonl_errors(tmp_path, obj, message):
    path = write(tmp_path, "n.jsonl", obj if isinstance(obj, str) else json.dumps(obj))
    with pytest.raises(DataError, match=message):
        read(path)


def test_prediction_inputs(tmp_path):
    txt = read(write(tmp_path, "p.txt", "Ada met Bob.\n\nhi\n"), with_labels=False)
    assert [r.tokens for r in txt.rows] == [["Ada", "met", "Bob", "."], ["hi"]] and txt.rows[0].tags is None
    rows = conll.read_lines(["Ada met Bob.\n", "\n", '{"tokens": ["New", "York"]}\n', '{"text": "Hi there"}\n'])
    assert [r.tokens for r in rows] == [["Ada", "met", "Bob", "."], ["New", "York"], ["Hi", "there"]]
    assert rows[1].text == "New York"
    with pytest.raises(DataError, match=r"<stdin>:1: \"tokens\" must be a non-empty list"):
        conll.read_lines(['{"tokens": "New York"}'])


def test_shared_files_with_odd_tokens_load(shared_data):
    opts = dict(repair_tags=True)
    train = read(str(shared_data / "wnut17" / "train.conll"), **opts)
    dev = read(str(shared_data / "wnut17" / "dev.conll"), **opts)
    assert len(train.rows) == 3394 and len(dev.rows) == 1009
    tokens = {t for r in train.rows for t in r.tokens}
    assert "&lt;" in tokens and any(t.startswith("http") for t in tokens)
    # the dev file has real orphan I- tags; without repair they are reported at their line
    with pytest.raises(DataError, match=r"dev\.conll:\d+: invalid tag sequence"):
        read(str(shared_data / "wnut17" / "dev.conll"))
    wikiann = read(str(shared_data / "wikiann-en" / "dev"), token_prefix="en:")
    assert len(wikiann.rows) == 10000 and not any(t.startswith("en:") for t in wikiann.rows[0].tokens)


def test_table_formats_are_refused_for_tokens(tmp_path):
    with pytest.raises(DataError, match=r"format 'csv' is not a token-classification format; use conll or jsonl"):
        conll.read(write(tmp_path, "q.csv", "a,b\n"), "csv")
