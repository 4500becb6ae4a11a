"""`tunelab compare`: per-method configs, failure isolation, resume, and the report table."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml

from tests.conftest import write_sentiment
from tunelab import cli
from tunelab.errors import ConfigError
from tunelab.methods import METHODS
from tunelab.recipes import compare


def write_config(tmp_path, model: str, data: dict, train: dict) -> str:
    cfg = {
        "model": {"name": model, "max_length": 64},
        "data": data,
        "output_dir": str(tmp_path / "cmp"),
        "train": {"batch_size": 16, "log_every": 2, **train},
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def table(out) -> dict[str, list[str]]:
    lines = [
        ln
        for ln in (out / "compare.md").read_text().splitlines()
        if ln.startswith("| ") and not ln.startswith("| method")
    ]
    return {cells[0]: cells for cells in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines)}


def test_method_config_order_defaults_then_overrides(tmp_path, tiny_bert_dir):
    path = write_config(tmp_path, str(tiny_bert_dir), {"train": "x.tsv"}, {"max_steps": 3})
    per = compare.parse_per_method(["lora.method.r=4"])
    lora = compare.method_config(path, [], per, "lora", tmp_path)
    assert (lora.train.lr, lora.method.r, lora.output_dir) == (1e-3, 4, str(tmp_path / "lora"))
    assert compare.method_config(path, [], per, "full", tmp_path).train.lr == 5e-5
    assert compare.method_config(path, ["train.lr=0.1"], per, "full", tmp_path).train.lr == 0.1


def test_bad_per_method_override_names_the_format():
    with pytest.raises(ConfigError, match="--set 'lorra.train.lr=1': expected METHOD.key=value"):
        compare.parse_per_method(["lorra.train.lr=1"])


def test_failure_is_reported_and_rerun_skips_finished(tmp_path, tiny_bert_dir):
    data = write_sentiment(tmp_path / "train.tsv", n=64)
    path = write_config(
        tmp_path,
        str(tiny_bert_dir),
        {"train": str(data), "text_column": "sentence"},
        {"max_steps": 3, "precision": "fp32"},
    )
    args = ["compare", path, "--methods", "lora,ia3", "--set", "ia3.method.target_modules=[nope]"]
    assert cli.main(args) == 0
    out = tmp_path / "cmp"
    rows = table(out)
    assert set(rows) == {"untrained head", "lora", "ia3"}
    assert rows["lora"][-1] == "ok" and (out / "lora" / "metrics.json").is_file()
    assert rows["ia3"][-1].startswith("failed: ") and "matches no linear layer" in rows["ia3"][-1]
    first = (out / "lora" / "metrics.json").stat().st_mtime
    time.sleep(0.01)
    assert cli.main(args) == 0
    assert (out / "lora" / "metrics.json").stat().st_mtime == first  # not retrained
    assert {"compare.html", "compare_params.png", "compare_curves.png"} <= {p.name for p in out.iterdir()}
    page = (out / "compare.html").read_text()
    assert page.count("src='data:image/png;base64,") == 2 and ".png'" not in page  # self-contained


@pytest.mark.real
def test_compare_every_method_on_minilm(tmp_path, shared_data):
    """Every applicable method end to end on a small SST-2 slice; the table has a sane row for each."""
    sst2 = shared_data / "sst2"
    path = write_config(
        tmp_path,
        "minilm-l6",
        {
            "train": str(sst2 / "train.tsv"),
            "dev": str(sst2 / "dev.tsv"),
            "text_column": "sentence",
            "max_train_rows": 192,
            "max_dev_rows": 128,
        },
        {"max_steps": 12, "eval_every": 12},
    )
    start = time.perf_counter()
    out = compare.run(path, [], log=lambda m: None)
    print(f"compare on minilm-l6: {time.perf_counter() - start:.0f} s")
    rows = table(out)
    applicable = list(METHODS)  # prefix included: tunelab's own encoder route (methods/prefix_encoder.py)
    assert set(rows) == {"untrained head", *applicable}
    data = {r["method"]: r for r in json.loads((out / "compare.json").read_text())}
    for name in applicable:
        r = data[name]
        assert r["status"] == "ok", (name, r.get("error"))
        assert 0.3 <= r["metric"] <= 1.0
        assert 0 < r["trainable"] <= r["total"] and r["adapter_bytes"] > 0
        assert r["tokens_per_s"] > 0 and 100 < r["peak_rss_mb"] < 20000 and r["train_seconds"] > 0
        assert re.fullmatch(r"[\d,]+", rows[name][2])
    assert data["full"]["trainable"] == data["full"]["total"]
    assert data["lora"]["adapter_bytes"] < data["full"]["adapter_bytes"] / 20


@pytest.mark.parametrize("task", ["causal_lm", "token_classification"])
def test_compare_works_for_every_task(tmp_path, request, task):
    """The baseline row goes through the task's own evaluate (template for LMs, windows for NER); methods train."""
    from tests.tasks.test_task_contract import CASES

    case = CASES[task]
    train, dev = case.data(tmp_path)
    raw = config_dict(task, request.getfixturevalue(case.model), train, dev, tmp_path / "cmp", case.overrides)
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = compare.run(str(path), [], methods=["lora"], log=lambda m: None)
    rows = table(out)
    baseline = "untuned model" if task == "causal_lm" else "untrained head"
    assert set(rows) == {baseline, "lora"} and rows["lora"][-1] == "ok", rows
    metric = {"causal_lm": "loss", "token_classification": "f1"}[task]
    data = {r["method"]: r for r in json.loads((out / "compare.json").read_text())}
    assert isinstance(data[baseline]["metric"], float) and isinstance(data["lora"]["metric"], float)
    assert f"dev {metric}" in (out / "compare.md").read_text()


def config_dict(task: str, model, train, dev, out, overrides: list[str]) -> dict:
    """A compare YAML from the contract suite's per-task overrides (key.path=value strings)."""
    raw: dict = {
        "task": {"name": task},
        "output_dir": str(out),
        "model": {"name": str(model)},
        "data": {"train": str(train), "dev": str(dev)},
        "train": {"max_steps": 2, "batch_size": 8, "threads": 1, "precision": "fp32", "lr": 1e-2},
    }
    for item in overrides:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        raw.setdefault(section, {})[name] = yaml.safe_load(value)
    return raw
