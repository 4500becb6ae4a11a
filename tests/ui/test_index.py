"""The dashboard's view of a runs folder: path safety, scanning, incremental metrics reading, config diffs."""

from __future__ import annotations

import json

import pytest

from tunelab.ui import index


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "runs"
    for rel in ("a", "cmp/lora", "cmp/full"):
        (root / rel / "model").mkdir(parents=True)
        (root / rel / "config.yaml").write_text(
            f"task: classification\nmethod:\n  name: {rel.split('/')[-1]}\ntrain:\n  metric: accuracy\n  lr: 0.1\n"
        )
        (root / rel / "model" / "adapter_config.json").write_text("{}")
    (root / "cmp" / "compare.json").write_text(json.dumps([{"method": "lora", "status": "ok", "run_dir": "lora"}]))
    (root / ".tunelab-ui" / "x").mkdir(parents=True)
    (root / ".tunelab-ui" / "x" / "config.yaml").write_text("task: classification\n")
    (root / "mlruns" / "0" / "abc").mkdir(parents=True)
    (root / "mlruns" / "0" / "abc" / "config.yaml").write_text("not a run\n")
    (tmp_path / "secret.txt").write_text("not yours")
    return root


@pytest.mark.parametrize("rel", ["../secret.txt", "a/../../secret.txt", "/etc/passwd", "a/\x00"])
def test_paths_outside_the_runs_folder_are_refused(root, rel):
    with pytest.raises(index.Forbidden):
        index.resolve(root, rel)


def test_a_symlink_out_of_the_runs_folder_is_refused(root, tmp_path):
    (root / "a" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(index.Forbidden):
        index.run_file(root, "a", "leak.txt")
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(index.Forbidden):
        index.resolve(root, "escape/secret.txt")


def test_run_files_exclude_weights_and_unknown_kinds(root):
    (root / "a" / "report.md").write_text("# hi")
    path, media = index.run_file(root, "a", "report.md")
    assert path.read_text() == "# hi" and media.startswith("text/markdown")
    with pytest.raises(index.Forbidden):
        index.run_file(root, "a", "model/adapter_config.json")
    with pytest.raises(index.Forbidden):
        index.run_file(root, "a", "config.py")
    with pytest.raises(index.NotFound):
        index.run_file(root, "a", "missing.md")
    with pytest.raises(index.NotFound):
        index.run_dir(root, "nope")


def test_scan_finds_nested_runs_and_compare_folders_but_not_hidden_ones(root):
    listing = index.list_runs(root)
    assert sorted(r["id"] for r in listing["runs"]) == ["a", "cmp/full", "cmp/lora"]
    assert [c["id"] for c in listing["compares"]] == ["cmp"] and listing["compares"][0]["rows"][0]["method"] == "lora"
    row = next(r for r in listing["runs"] if r["id"] == "a")
    assert (
        row["state"] == "interrupted" and row["method"] == "a" and row["metric"] == "accuracy" and row["value"] is None
    )


def test_records_are_read_incrementally_and_a_partial_line_waits(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo')
    records, offset = index.read_records(path)
    assert records == [{"step": 1, "loss": 0.5}]
    with open(path, "a") as f:
        f.write('ss": 0.4}\n')
    records, offset = index.read_records(path, offset)
    assert records == [{"step": 2, "loss": 0.4}]
    path.write_text('{"step": 1, "loss": 0.9}\n')  # a resumed run truncated the log
    assert index.read_records(path, offset)[0] == [{"step": 1, "loss": 0.9}]


def test_compare_lists_only_differing_keys(root):
    out = index.compare(root, ["cmp/lora", "cmp/full"])
    assert [d["key"] for d in out["diff"]] == ["method.name"]
    assert out["diff"][0]["values"] == ["lora", "full"]
