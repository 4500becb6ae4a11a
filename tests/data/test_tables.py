"""Parquet, Arrow, datasets save_to_disk folders and hub ids: the same rows, columns and errors as the text readers;
an SST-2 slice in each format trains to exactly the metrics of the TSV."""

import csv

import pytest

from tunelab import config
from tunelab.data.sources import read_table
from tunelab.errors import DataError
from tunelab.recipes import finetune


@pytest.fixture(scope="module")
def sst2_slice(tmp_path_factory, shared_data):
    """The first 96 SST-2 training rows and 32 dev rows as TSV, Parquet, Arrow and save_to_disk folders."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("sst2-formats")
    out = {}
    for split, n in (("train", 96), ("dev", 32)):
        with (shared_data / "sst2" / f"{split}.tsv").open(encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1 : n + 1]
        # the tiny fixture tokenizer maps "'" to an id past its model's vocabulary (its vocab list holds "a" twice)
        rows = [(t.replace("'", ""), y) for t, y in rows]
        tsv = folder / f"{split}.tsv"
        tsv.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
        table = pa.table({"sentence": [t for t, _ in rows], "label": [int(y) for _, y in rows]})
        pq.write_table(table, folder / f"{split}.parquet")
        with pa.OSFile(str(folder / f"{split}.arrow"), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
        datasets.Dataset(table).save_to_disk(str(folder / f"{split}-ds"))
        out[split] = {"tsv": tsv, "parquet": folder / f"{split}.parquet", "arrow": folder / f"{split}.arrow"}
        out[split]["dataset"] = folder / f"{split}-ds"
    return out


def test_every_format_trains_to_the_tsv_metrics(sst2_slice, tmp_path, tiny_bert_dir):
    results = {}
    for fmt in ("tsv", "parquet", "arrow", "dataset"):
        cfg = config.load(
            None,
            [
                f"model.name={tiny_bert_dir}",
                f"data.train={sst2_slice['train'][fmt]}",
                f"data.dev={sst2_slice['dev'][fmt]}",
                "data.text_column=sentence",
                f"output_dir={tmp_path / fmt}",
                "train.max_steps=4",
                "train.batch_size=16",
                "train.lr=1e-3",
                "train.precision=fp32",
                "speed.cache=false",
            ],
        )
        results[fmt] = finetune.run(cfg, quiet=True, log=lambda m: None)["dev"]
    for fmt in ("parquet", "arrow", "dataset"):
        assert results[fmt]["accuracy"] == results["tsv"]["accuracy"], fmt
        assert results[fmt]["loss"] == pytest.approx(results["tsv"]["loss"], rel=1e-6), fmt


def test_rows_columns_by_position_and_errors_with_rows(sst2_slice, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_table(str(sst2_slice["train"]["parquet"]), text_column="sentence").rows
    from_tsv = read_table(str(sst2_slice["train"]["tsv"]), text_column="sentence").rows
    assert [(r.text, r.label) for r in rows] == [(r.text, r.label) for r in from_tsv] and len(rows) == 96
    assert [r.line for r in rows[:3]] == [1, 2, 3]  # a table's row numbers (the TSV's are file lines)
    by_position = read_table(str(sst2_slice["train"]["arrow"]), text_column=0, label_column=1).rows
    assert [(r.text, r.label) for r in by_position] == [(r.text, r.label) for r in rows]
    with pytest.raises(
        DataError, match=r"train\.parquet:1: data\.text_column: expected a column 'sentense'.*did you mean 'sentence'"
    ):
        read_table(str(sst2_slice["train"]["parquet"]), text_column="sentense")
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": ["fine", " ", "ok"], "label": ["a", "b", None]}), bad)
    with pytest.raises(DataError, match=r"bad\.parquet:2: text in column 'text': expected non-empty text"):
        read_table(str(bad))
    skipped = read_table(str(bad), on_error="skip")
    assert [r.text for r in skipped.rows] == ["fine"] and [n for n, _ in skipped.skipped] == [2, 3]
    with pytest.raises(DataError, match=r"data\.delimiter applies to csv/tsv files"):
        read_table(str(bad), delimiter=";")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet: expected a readable parquet file"):
        read_table(str(broken))


def test_dataset_dict_folders_and_hub_ids(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a b"], "label": [0]})}).save_to_disk(
        str(tmp_path / "dd")
    )
    with pytest.raises(
        DataError, match=r"dd: a DatasetDict folder with splits train; give one split's folder, e\.g\. .*dd/train"
    ):
        read_table(str(tmp_path / "dd"))
    assert read_table(str(tmp_path / "dd" / "train")).rows[0].text == "a b"
    with pytest.raises(DataError, match=r"expected a hub dataset id hf://datasets/OWNER/NAME"):
        read_table("hf://models/foo")
    # offline (the tests set HF_HUB_OFFLINE=1): the error names the cache it looked in
    with pytest.raises(
        DataError,
        match=rf"could not load someone/nothing-here \(split dev\) .*cache {datasets.config.HF_DATASETS_CACHE}",
    ):
        read_table("hf://datasets/someone/nothing-here@v1:dev")


def test_hub_ids_parse_name_config_revision_and_split():
    from tunelab.data.tables import parse_hub

    assert parse_hub("hf://datasets/nyu-mll/glue/sst2@main:validation") == {
        "name": "nyu-mll/glue",
        "config": "sst2",
        "revision": "main",
        "split": "validation",
    }
    assert parse_hub("hf://datasets/imdb") == {"name": "imdb", "config": None, "revision": None, "split": "train"}


def test_rewriting_commands_refuse_tables_clearly(sst2_slice):
    from tunelab.data import rewrite

    with pytest.raises(DataError, match=r"train\.parquet: cannot rewrite format 'parquet' .*convert it to JSONL first"):
        rewrite.read_raw(str(sst2_slice["train"]["parquet"]), "parquet")
