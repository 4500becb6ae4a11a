"""calibrate / eval / fairness on a tiny classification run: files written, reports rebuilt, errors one line."""

from __future__ import annotations

import json

import pytest

from tunelab import cli
from tunelab.evaluation import calibration


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_bert_dir):
    from tests.conftest import write_sentiment

    tmp = tmp_path_factory.mktemp("eval-cmds")
    data = write_sentiment(tmp / "train.tsv", n=80)
    dev = write_sentiment(tmp / "dev.tsv", n=40, seed=3)
    assert (
        cli.main(
            [
                "train",
                "--quiet",
                f"model.name={tiny_bert_dir}",
                f"data.train={data}",
                f"data.dev={dev}",
                "data.text_column=sentence",
                "train.max_steps=10",
                "train.batch_size=16",
                "train.lr=5e-3",
                f"output_dir={tmp / 'run'}",
            ]
        )
        == 0
    )
    return tmp / "run"


def test_training_writes_temperature_calibration_and_errors(run):
    t = json.loads((run / "temperature.json").read_text())
    assert t["temperature"] > 0 and t["examples"] == 40 and t["nll_after"] <= t["nll_before"] + 1e-9
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["after"]["nll"] <= cal["before"]["nll"] + 1e-9 and len(cal["before"]["reliability"]) == 15
    err = json.loads((run / "error_analysis.json").read_text())
    lines = (run / "errors.jsonl").read_text().splitlines()
    assert err["examples"] == 40 and err["mistakes"] == len(lines)


def test_eval_reports_before_and_after(run, tmp_path, capsys):
    dev = run.parent / "dev.tsv"
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--data", str(dev), "--errors", str(tmp_path / "e.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    cal = out["calibration"]
    assert cal["temperature"] == pytest.approx(calibration.stored_temperature(run))
    assert cal["after"]["nll"] <= cal["before"]["nll"] + 1e-9  # the same dev file the temperature was fitted on
    assert out["error_analysis"]["examples"] == 40
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == out["error_analysis"]["mistakes"]


def test_calibrate_refuses_to_replace_without_force(run, capsys):
    before = (run / "temperature.json").read_text()
    assert cli.main(["calibrate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "already has a temperature" in err and "--force" in err and err.count("\n") == 1
    assert (run / "temperature.json").read_text() == before
    assert cli.main(["calibrate", str(run), "--data", str(run.parent / "train.tsv"), "--force"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["examples"] == 80 and res["nll_after"] <= res["nll_before"] + 1e-9
    assert json.loads((run / "temperature.json").read_text())["fitted_on"].endswith("train.tsv")
    assert "<section id='calibration'>" in (run / "report.html").read_text()


def test_fairness_groups_and_counterfactuals(run, tmp_path, capsys):
    data = tmp_path / "groups.tsv"
    data.write_text(
        "sentence\tlabel\tgroup\nhe was good\t1\ta\nshe was bad\t0\ta\nthe good film\t1\tb\nhis awful plot\t0\tb\n"
    )
    capsys.readouterr()
    assert (
        cli.main(["fairness", str(run), "--data", str(data), "--group-column", "group", "--out", str(tmp_path / "f")])
        == 0
    )
    head = json.loads(capsys.readouterr().out)
    assert (
        set(head["counterfactual_by_category"]) == {"gender"}
        and head["counterfactual_by_category"]["gender"]["variants"] == 3
    )
    full = json.loads((tmp_path / "f" / "fairness.json").read_text())
    assert set(full["groups"]["groups"]) == {"a", "b"} and full["groups"]["class"] == "1"
    assert (
        "fairness" not in (run / "report.html").read_text().split("<nav>")[1].split("</nav>")[0]
    )  # --out leaves the run alone


@pytest.mark.parametrize(
    "args, message",
    [
        (["--positive", "maybe", "--eec", "x.csv"], "--positive 'maybe': not a label of this run; labels: 0, 1"),
        (["--eec", "/nonexistent/eec.csv"], "/nonexistent/eec.csv: cannot read"),
        (["--crows-pairs", "c.csv"], "--crows-pairs needs a causal_lm run"),
        (["--group-column", "g"], "--group-column needs --data"),
        (["--categories", "caste"], "unknown term category 'caste'"),
    ],
)
def test_fairness_errors_are_one_line(run, args, message, capsys):
    assert cli.main(["fairness", str(run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_predict_and_serve_use_the_stored_temperature(run, tmp_path, capsys):
    import math
    import shutil

    from tunelab import runs
    from tunelab.serve import registry

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "temperature.json").unlink()
    capsys.readouterr()

    def predict() -> dict:
        assert cli.main(["predict", str(copy), "--data", str(run.parent / "dev.tsv")]) == 0
        return [json.loads(x)["probs"] for x in capsys.readouterr().out.splitlines()]

    raw = predict()
    calibration.store_temperature(copy, 3.0, "test", 1, 0.0, 0.0)
    scaled = predict()
    for p1, p3 in zip(raw, scaled):  # softmax(z / 3) from softmax(z): log-probs differ from z by a constant
        z = {k: math.log(v) / 3 for k, v in p1.items()}
        norm = sum(math.exp(v) for v in z.values())
        assert all(abs(p3[k] - math.exp(z[k]) / norm) < 1e-4 for k in z)
    served = registry._load_run("m", copy)  # what /v1/predict calls: Task.predict on the served LoadedRun
    assert served.run.temperature == 3.0 and runs.load_run(copy).temperature == 3.0
    rows = served.task.read(served.run.cfg, str(run.parent / "dev.tsv"), with_labels=False).rows
    assert [o["probs"] for o in served.task.predict(served.run, rows)] == scaled
