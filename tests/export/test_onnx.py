"""tunelab export --format onnx: dynamic axes, parity with PyTorch, and the onnxruntime back-end for eval/predict/serve."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch

from tunelab import cli, runs
from tunelab.errors import TunelabError

pytest.importorskip("onnxruntime", reason="ONNX export needs the compress extra: pip install 'tunelab[compress]'")


@pytest.fixture(scope="module")
def onnx_run(tiny_cls_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "run"
    assert (
        cli.main(
            ["export", str(tiny_cls_run), str(out), "--format", "onnx", "--latency-examples", "4", "--batch-size", "8"]
        )
        == 0
    )
    return out


def test_onnx_matches_pytorch_on_any_batch_and_length(onnx_run, tiny_cls_run):
    record = json.loads((onnx_run / "cost.json").read_text())
    assert record["parity"]["max_abs_logit_diff"] <= 1e-4 and record["parity"]["batches"] >= 1
    ort, ref = runs.load_run(onnx_run), runs.load_run(tiny_cls_run)
    assert ort.backend == "onnxruntime" and type(ort.model).__name__ == "OrtModel"
    texts = ["good", "the movie was very good and the plot was fun", "bad plot", "awful", "a b c d e f g h i j k l"]
    enc = ort.tokenizer(texts, padding=True, return_tensors="pt")  # a batch size and length never seen at export
    with torch.no_grad():
        diff = (ort.model(**enc).logits - ref.model(**enc).logits).abs().max()
    assert diff <= 1e-4


def test_onnx_run_predicts_and_evaluates_through_the_task_code(onnx_run, tiny_cls_run, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("good fun movie\nawful dull plot\n"))
    assert cli.main(["predict", str(onnx_run)]) == 0
    ort_lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    monkeypatch.setattr(sys, "stdin", io.StringIO("good fun movie\nawful dull plot\n"))
    assert cli.main(["predict", str(tiny_cls_run)]) == 0
    ref_lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["label"] for x in ort_lines] == [x["label"] for x in ref_lines]
    for a, b in zip(ort_lines, ref_lines):
        assert all(abs(a["probs"][k] - b["probs"][k]) < 1e-4 for k in a["probs"])
    assert cli.main(["eval", str(onnx_run), "--data", str(tiny_cls_run.parent / "train.tsv")]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1


def test_backend_choice_is_checked(onnx_run, tiny_cls_run):
    with pytest.raises(TunelabError, match="cannot run a onnx run"):
        runs.load_run(onnx_run, backend="torch")
    with pytest.raises(TunelabError, match="tunelab export RUN OUT --format gguf"):
        runs.load_run(tiny_cls_run, backend="llamacpp")


def test_onnx_refuses_a_causal_lm(tiny_lm_run, tmp_path, capsys):
    assert cli.main(["export", str(tiny_lm_run), str(tmp_path / "x"), "--format", "onnx"]) == 2
    assert "--format gguf" in capsys.readouterr().err


def test_serve_predicts_with_onnxruntime(onnx_run, tiny_cls_run):
    import httpx

    from tests.serve.harness import running
    from tunelab.serve import registry

    served = registry.load_all([f"ort={onnx_run}", f"pt={tiny_cls_run}"], log=lambda m: None)
    assert type(served["ort"].model).__name__ == "OrtModel"
    with running(served) as url:
        got = {
            name: httpx.post(
                url + "/v1/predict", json={"model": name, "input": ["good fun movie", "awful dull plot"]}
            ).json()
            for name in ("ort", "pt")
        }
    assert [d["label"] for d in got["ort"]["data"]] == [d["label"] for d in got["pt"]["data"]]


def test_ner_run_exports_and_predicts_the_same_entities(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    from tests.tasks.test_token_classification import write_ner

    train, dev = write_ner(tmp_path / "train.conll", n=48), write_ner(tmp_path / "dev.conll", n=12, seed=1)
    run = tmp_path / "ner"
    assert (
        cli.main(
            [
                "train",
                "--quiet",
                "task=token_classification",
                f"model.name={tiny_bert_dir}",
                f"data.train={train}",
                f"data.dev={dev}",
                "model.max_length=16",
                "task.stride=4",
                "train.epochs=4",
                "train.batch_size=16",
                "train.lr=1e-2",
                "speed.cache=false",
                f"output_dir={run}",
            ]
        )
        == 0
    )
    out = tmp_path / "ner-onnx"
    assert (
        cli.main(["export", str(run), str(out), "--format", "onnx", "--latency-examples", "2", "--batch-size", "8"])
        == 0
    )
    assert json.loads((out / "cost.json").read_text())["parity"]["max_abs_logit_diff"] <= 1e-4
    outputs = {}
    for name, folder in (("pt", run), ("ort", out)):  # long input: windows of 16 sub-words, merged per word
        monkeypatch.setattr(
            sys, "stdin", io.StringIO("the good actor was in the film story and the actor was very good in it\n")
        )
        capsys.readouterr()
        assert cli.main(["predict", str(folder)]) == 0
        outputs[name] = json.loads(capsys.readouterr().out)
    assert outputs["ort"]["tags"] == outputs["pt"]["tags"] and outputs["ort"]["entities"] == outputs["pt"]["entities"]
    assert cli.main(["eval", str(out), "--data", str(dev)]) == 0
    ort_f1 = json.loads(capsys.readouterr().out)["f1"]
    assert cli.main(["eval", str(run), "--data", str(dev)]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == pytest.approx(ort_f1)
