"""eval.metrics: the user's own metric functions from explicit files, next to the task's, usable as train.metric."""

import json

import pytest

from tests.conftest import write_sentiment
from tunelab import config
from tunelab.errors import ConfigError, TunelabError
from tunelab.recipes import finetune

METRICS = """
def share_positive(gold, predicted):
    return sum(p == "1" for p in predicted) / len(predicted)


def errors(gold, predicted):
    return sum(g != p for g, p in zip(gold, predicted))


def words(gold, predicted):
    return "many"
"""


def _cfg(tmp, model, *extra):
    return config.load(
        None,
        [
            f"model.name={model}",
            f"data.train={write_sentiment(tmp / 'train.tsv', n=48)}",
            f"data.dev={write_sentiment(tmp / 'dev.tsv', n=16, seed=1)}",
            "data.text_column=sentence",
            f"output_dir={tmp / 'run'}",
            "train.max_steps=4",
            "train.eval_every=2",
            "train.batch_size=8",
            "train.precision=fp32",
            *extra,
        ],
    )


def test_user_metrics_are_computed_and_one_picks_the_best_checkpoint(tmp_path, tiny_bert_dir):
    (tmp_path / "mine.py").write_text(METRICS, encoding="utf-8")
    file = tmp_path / "mine.py"
    cfg = _cfg(
        tmp_path, tiny_bert_dir, f"eval.metrics=[{file}:share_positive, {file}:errors:min]", "train.metric=errors"
    )
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    errors = round((1 - final["dev"]["accuracy"]) * 16)
    assert final["dev"]["errors"] == errors and 0 <= final["dev"]["share_positive"] <= 1
    evals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    dev = [e for e in evals if "dev/errors" in e]
    assert [e["step"] for e in dev] == [2, 4] and all(float(e["dev/errors"]).is_integer() for e in dev)
    best = min(dev, key=lambda e: e["dev/errors"])  # the first of equals: a later one must be strictly better
    assert final["best_step"] == best["step"]

    from tunelab.evaluation import custom
    from tunelab.tasks import TASKS

    user = custom.load(cfg.eval.metrics)
    assert custom.chosen(TASKS["classification"], "errors", user).higher_is_better is False
    assert custom.chosen(TASKS["classification"], "share_positive", user).higher_is_better is True


def test_errors_name_the_entry(tmp_path, tiny_bert_dir):
    (tmp_path / "mine.py").write_text(METRICS, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"eval.metrics: 'nowhere.py:f': file nowhere.py not found"):
        finetune.run(_cfg(tmp_path, tiny_bert_dir, "eval.metrics=[nowhere.py:f]"), quiet=True, log=lambda m: None)
    assert not (tmp_path / "run").exists()  # nothing was started
    with pytest.raises(ConfigError, match=r"has no function 'nope' \(functions: share_positive, errors, words\)"):
        finetune.run(_cfg(tmp_path, tiny_bert_dir, f"eval.metrics=[{tmp_path / 'mine.py'}:nope]"), quiet=True)
    bad = _cfg(tmp_path, tiny_bert_dir, f"eval.metrics=[{tmp_path / 'mine.py'}:words]")
    with pytest.raises(TunelabError, match=r"mine.py:words' returned 'many' \(str\); expected a finite number"):
        finetune.run(bad, quiet=True, log=lambda m: None)


def test_config_checks_entries_and_train_metric():
    with pytest.raises(ConfigError, match=r"eval.metrics: 'metrics:f': expected path/to/file.py:function"):
        config.load(None, ["eval.metrics=[metrics:f]"])
    with pytest.raises(ConfigError, match=r"or a custom metric of eval.metrics: f1b"):
        config.load(None, ["eval.metrics=[m.py:f1b]", "train.metric=f1c"])
    assert config.load(None, ["eval.metrics=[m.py:f1b]", "train.metric=f1b"]).train.metric == "f1b"


def test_tunelab_eval_reports_the_runs_own_metrics(tmp_path, tiny_bert_dir, capsys):
    from tunelab import cli

    file = tmp_path / "mine.py"
    file.write_text(METRICS, encoding="utf-8")
    finetune.run(_cfg(tmp_path, tiny_bert_dir, f"eval.metrics=[{file}:errors:min]"), quiet=True, log=lambda m: None)
    other = write_sentiment(tmp_path / "other.tsv", n=24, seed=2)
    capsys.readouterr()
    assert cli.main(["eval", str(tmp_path / "run"), "--data", str(other)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["errors"] == round((1 - got["accuracy"]) * 24) and float(got["errors"]).is_integer()


def test_compare_ranks_methods_by_a_custom_train_metric(tmp_path, tiny_bert_dir):
    import yaml

    from tunelab.recipes import compare

    file = tmp_path / "mine.py"
    file.write_text(METRICS, encoding="utf-8")
    cfg = {
        "model": {"name": str(tiny_bert_dir)},
        "data": {
            "train": str(write_sentiment(tmp_path / "train.tsv", n=48)),
            "dev": str(write_sentiment(tmp_path / "dev.tsv", n=16, seed=1)),
            "text_column": "sentence",
        },
        "eval": {"metrics": [f"{file}:errors:min"]},
        "output_dir": str(tmp_path / "cmp"),
        "train": {"max_steps": 2, "batch_size": 8, "precision": "fp32", "metric": "errors"},
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    out = compare.run(str(path), [], methods=["lora"], log=lambda m: None)
    rows = {r["method"]: r for r in json.loads((out / "compare.json").read_text())}
    assert set(rows) == {"untrained head", "lora"} and rows["lora"]["status"] == "ok", rows
    assert all(float(r["metric"]).is_integer() and 0 <= r["metric"] <= 16 for r in rows.values()), rows  # errors of 16
    assert "| method | dev errors |" in (out / "compare.md").read_text()
