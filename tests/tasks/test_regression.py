"""Regression: target reading and its errors (file:row), metrics and losses hand-checked, several targets and text
pairs end to end on the tiny model (the task contract suite covers train/eval/predict/serve/resume too)."""

import json
import math

import pytest
import torch

from tests.conftest import write_scores
from tunelab import config, runs
from tunelab.errors import DataError
from tunelab.recipes import finetune
from tunelab.tasks import TASKS
from tunelab.tasks import regression as reg


def _cfg(tmp, model, *extra):
    return config.load(
        None,
        [
            "task=regression",
            f"model.name={model}",
            "data.text_column=sentence",
            "data.label_column=score",
            f"output_dir={tmp / 'run'}",
            "train.precision=fp32",
            *extra,
        ],
    )


@pytest.mark.parametrize(
    "cell, why",
    [("great", 'expected a number, found "great"'), ("nan", "expected a finite number"), ("", "expected a number")],
)
def test_non_numeric_target_names_file_and_row(tmp_path, tiny_bert_dir, cell, why):
    path = tmp_path / "d.tsv"
    path.write_text(f"sentence\tscore\ngood\t4.5\nbad\t{cell}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"d\.tsv:3: target in column 'score': {why}"):
        TASKS["regression"].read(_cfg(tmp_path, tiny_bert_dir), str(path))
    skipped = TASKS["regression"].read(_cfg(tmp_path, tiny_bert_dir, "data.on_error=skip"), str(path))
    assert [r.label for r in skipped.rows] == ["4.5"] and skipped.skipped[0][0] == 3


def test_several_targets_as_json_lists_and_a_count_mismatch(tmp_path, tiny_bert_dir):
    path = tmp_path / "d.jsonl"
    rows = [
        {"sentence": "good", "score": [1, 2.5]},
        {"sentence": "bad", "score": [0, "1"]},
        {"sentence": "x", "score": [3]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:3: expected 2 target\(s\) as in the first row, found 1"):
        TASKS["regression"].read(_cfg(tmp_path, tiny_bert_dir), str(path))
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n", encoding="utf-8")
    table = TASKS["regression"].read(_cfg(tmp_path, tiny_bert_dir), str(path))
    assert [reg.targets(r.label) for r in table.rows] == [[1.0, 2.5], [0.0, 1.0]]


def test_metrics_hand_computed():
    m = reg.metrics([[1.0], [2.0], [3.0], [4.0]], [[1.5], [2.0], [2.5], [5.0]], ["target"])
    assert m["mse"] == pytest.approx((0.25 + 0 + 0.25 + 1) / 4) and m["mae"] == pytest.approx((0.5 + 0 + 0.5 + 1) / 4)
    assert m["spearman"] == pytest.approx(1.0)  # same order
    x, y = [1, 2, 3, 4], [1.5, 2, 2.5, 5]
    mx, my = sum(x) / 4, sum(y) / 4
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    r = cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    assert m["pearson"] == pytest.approx(r)
    const = reg.metrics([[1.0], [2.0]], [[3.0], [3.0]], ["target"])
    assert const["pearson"] == 0.0 and const["spearman"] == 0.0  # a constant prediction has no correlation


def test_losses_mse_and_huber_per_row_mean_summed():
    out, batch = {"logits": torch.tensor([[0.0, 3.0], [1.0, 1.0]])}, {"targets": torch.tensor([[1.0, 0.0], [1.0, 1.0]])}
    mse, n = reg.loss(out, batch, ("mse", 1.0))
    assert n == 2 and float(mse) == pytest.approx((1 + 9) / 2)
    huber, _ = reg.loss(out, batch, ("huber", 1.0))
    assert float(huber) == pytest.approx((0.5 + 2.5) / 2)


def test_text_pairs_and_two_targets_train_and_predict_on_the_original_scale(tmp_path, tiny_bert_dir):
    lines = []
    import random

    rng = random.Random(0)
    for _ in range(96):
        a, b = rng.choice(["good", "bad"]), rng.choice(["great", "awful"])
        ya = 4.0 if a == "good" else 1.0
        yb = 10.0 if b == "great" else -10.0
        lines.append(json.dumps({"sentence": f"the {a}", "pair": f"a {b} plot", "score": [ya, yb]}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = _cfg(
        tmp_path,
        tiny_bert_dir,
        f"data.train={tmp_path / 'train.jsonl'}",
        "data.text_pair_column=pair",
        "task.target_names=[first, second]",
        "task.loss=huber",
        "train.lr=3e-3",
        "train.epochs=20",
        "train.batch_size=16",
        "train.warmup_fraction=0",
    )
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    assert final["dev"]["pearson"] > 0.9, final["dev"]
    assert set(final["dev"]["per_target"]) == {"first", "second"}
    state = json.loads((tmp_path / "run" / "task_state.json").read_text())
    assert state["mean"][1] == pytest.approx(0, abs=3) and state["std"][0] == pytest.approx(1.5, abs=0.1)
    run = runs.load_run(tmp_path / "run")
    inputs = TASKS["regression"].parse_inputs(['{"text": "the good", "text_pair": "a great plot"}'], "stdin")
    (out,) = TASKS["regression"].predict(run, inputs)
    assert out["text_pair"] == "a great plot" and set(out["values"]) == {"first", "second"}
    assert out["values"]["first"] == pytest.approx(4, abs=1) and out["values"]["second"] == pytest.approx(10, abs=3)


def test_constant_targets_and_wrong_target_names_are_refused(tmp_path, tiny_bert_dir):
    path = tmp_path / "d.tsv"
    path.write_text("sentence\tscore\ngood\t2\nbad\t2\n", encoding="utf-8")
    cfg = _cfg(tmp_path, tiny_bert_dir, f"data.train={path}")
    rows = TASKS["regression"].read(cfg, str(path)).rows
    with pytest.raises(DataError, match="every training target is the same value"):
        TASKS["regression"].check_rows(cfg, rows, str(path), print)
    two = _cfg(tmp_path, tiny_bert_dir, f"data.train={write_scores(path)}", "task.target_names=[a, b]")
    with pytest.raises(DataError, match="task.target_names names 2 targets, the rows hold 1"):
        TASKS["regression"].check_rows(two, TASKS["regression"].read(two, str(path)).rows, str(path), print)
