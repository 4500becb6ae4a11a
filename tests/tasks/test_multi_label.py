"""Multi-label classification: label cells, thresholds, metrics, errors with file:line, and a tiny run end to end
(the task contract suite covers train/eval/predict/serve/resume on it too)."""

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import write_topics
from tunelab import cli, config, runs
from tunelab.errors import ConfigError, DataError
from tunelab.recipes import finetune
from tunelab.tasks import TASKS
from tunelab.tasks import multi_label as ml


def test_label_cells_delimited_json_or_empty():
    assert ml.label_set("sports, business", ",", "f:2") == ["sports", "business"]
    assert ml.label_set('["a", 3]', ",", "f:2") == ["a", "3"]
    assert ml.label_set("[]", ",", "f:2") == []
    assert ml.label_set("a|b", "|", "f:2") == ["a", "b"]
    with pytest.raises(DataError, match=r"^f:7: label 'a' is listed twice"):
        ml.label_set("a,b,a", ",", "f:7")
    with pytest.raises(DataError, match=r"^f:3: empty label name"):
        ml.label_set("a,,b", ",", "f:3")
    with pytest.raises(DataError, match=r"^f:4: label list is not valid JSON"):
        ml.label_set('["a", ', ",", "f:4")


def test_thresholds_tuned_per_label_hand_computed():
    probs = [[0.9, 0.3], [0.35, 0.2], [0.1, 0.8], [0.32, 0.1]]
    gold = [[1, 0], [1, 0], [0, 1], [0, 0]]
    # label 0: positives at 0.9 and 0.35, a negative at 0.32: 0.35 catches both without the negative (F1 1)
    # label 1: positive at 0.8 only; every threshold in (0.3, 0.8] gives F1 1, the one closest to 0.5 wins
    assert ml.tune_thresholds(probs, gold) == [0.35, 0.5]
    assert ml.tune_thresholds([[0.9], [0.1]], [[0], [0]]) == [0.5]  # no positive on dev: the default


def test_metrics_hand_computed():
    gold = [[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]]
    pred = [[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]]
    m = ml.metrics(gold, pred, ["a", "b", "c"])
    # tp 3, fp 1, fn 2 over every decision
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["per_class"]["b"]["f1"] == pytest.approx(2 / 3) and m["per_class"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    # rows: 2/3, 1, empty vs empty = 1, 2*1/(2+2) = 0.5
    assert m["samples_f1"] == pytest.approx((2 / 3 + 1 + 1 + 0.5) / 4)
    assert m["subset_accuracy"] == pytest.approx(2 / 4)


def test_loss_is_the_mean_bce_per_label_summed_over_rows():
    task = TASKS["multi_label"]
    logits = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    total, n = task.loss({"logits": logits}, {"targets": targets})
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / 2
    assert n == 2 and torch.isclose(total, expected)


def _cfg(tmp: Path, tiny_bert_dir, *extra: str) -> config.RunConfig:
    return config.load(
        None,
        [
            "task=multi_label",
            f"model.name={tiny_bert_dir}",
            f"data.train={write_topics(tmp / 'train.tsv', n=192)}",
            f"data.dev={write_topics(tmp / 'dev.tsv', n=32, seed=1)}",
            "data.text_column=sentence",
            f"output_dir={tmp / 'run'}",
            "train.batch_size=16",
            "train.lr=3e-3",
            "train.epochs=20",
            "train.warmup_fraction=0",
            "train.weight_decay=0",
            "train.precision=fp32",
            *extra,
        ],
    )


def test_json_list_labels_read_from_jsonl_and_unknown_labels_name_the_line(tmp_path, tiny_bert_dir):
    rows = [{"text": "the film", "tags": ["cinema"]}, {"text": "a plot", "tags": []}, {"text": "x", "tags": ["a", "b"]}]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    cfg = _cfg(tmp_path, tiny_bert_dir, "data.label_column=tags", "data.text_column=text")
    table = TASKS["multi_label"].read(cfg, str(path))
    assert [json.loads(r.label) for r in table.rows] == [["cinema"], [], ["a", "b"]]
    with pytest.raises(DataError, match=r"d\.jsonl:3: label 'a' was not seen in training; known labels: cinema, story"):
        ml.encode(table.rows, None, ["cinema", "story"], 16, str(path))
    (tmp_path / "d.tsv").write_text("text\ttags\nfine\ta,b\nbad\ta,,b\n", encoding="utf-8")
    tsv = _cfg(tmp_path, tiny_bert_dir, "data.label_column=tags", "data.text_column=text", "data.on_error=skip")
    skipped = TASKS["multi_label"].read(tsv, str(tmp_path / "d.tsv"))
    assert [r.text for r in skipped.rows] == ["fine"] and skipped.skipped[0][0] == 3
    assert skipped.skipped[0][1].startswith("empty label name")
    path.write_text(json.dumps({"text": "t", "tags": ["a", 1.5]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:1: label list in column 'tags': expected strings or integers"):
        TASKS["multi_label"].read(cfg, str(path))


def test_threshold_option_is_checked():
    with pytest.raises(ConfigError, match="task.threshold"):
        config.load(None, ["task=multi_label", "task.threshold=1.5"])
    assert config.load(None, ["task=multi_label", "task.threshold=0.3"]).task.threshold == 0.3


def test_tiny_run_learns_label_sets_with_tuned_thresholds_saved(tmp_path, tiny_bert_dir, capsys):
    cfg = _cfg(tmp_path, tiny_bert_dir, f"data.test={write_topics(tmp_path / 'test.tsv', n=32, seed=2)}")
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    assert final["dev"]["micro_f1"] > 0.8, final["dev"]
    saved = json.loads((tmp_path / "run" / "task_state.json").read_text())
    labels = runs.read_labels(tmp_path / "run")
    assert labels == ["cinema", "people", "story"] and len(saved["thresholds"]) == 3
    assert final["dev"]["thresholds"] == dict(zip(labels, saved["thresholds"]))
    assert final["test"]["thresholds"] == final["dev"]["thresholds"]  # test uses the dev-tuned values
    assert (
        set(final["dev"]["per_class"]) == set(labels)
        and "per class (dev)" in (tmp_path / "run" / "report.md").read_text().lower()
    )
    run = runs.load_run(tmp_path / "run")
    out = TASKS["multi_label"].predict(run, TASKS["multi_label"].parse_inputs(["the film actor", "the a"], "stdin"))
    assert {"cinema", "people"} <= set(out[0]["labels"]) and not {"cinema", "people"} & set(out[1]["labels"])
    capsys.readouterr()
    assert cli.main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "test.tsv")]) == 0
    assert json.loads(capsys.readouterr().out)["micro_f1"] == pytest.approx(final["test"]["micro_f1"])


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_lora_runs_reload_with_their_head_and_predict_what_training_evaluated(task, tmp_path, tiny_bert_dir):
    from tests.conftest import write_scores

    writer, extra = (write_topics, []) if task == "multi_label" else (write_scores, ["data.label_column=score"])
    cfg = config.load(
        None,
        [
            f"task={task}",
            f"model.name={tiny_bert_dir}",
            f"data.train={writer(tmp_path / 'train.tsv')}",
            f"data.dev={writer(tmp_path / 'dev.tsv', n=16, seed=1)}",
            "data.text_column=sentence",
            f"output_dir={tmp_path / 'run'}",
            "method=lora",
            "train.lr=1e-2",
            "train.max_steps=3",
            "train.precision=fp32",
            *extra,
        ],
    )
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    run = runs.load_run(tmp_path / "run")
    again = TASKS[task].evaluate(run, TASKS[task].read(cfg, cfg.data.dev).rows, cfg.data.dev, print)
    first = TASKS[task].metrics[0].name
    assert again[first] == pytest.approx(final["dev"][first], rel=1e-5)
