"""tunelab prune: magnitude masks, Taylor-ranked head/FFN removal that shrinks the matrices, recovery through the loop."""

from __future__ import annotations

import json

import pytest
import torch

from tunelab import cli, runs
from tunelab.compress import structure


def test_choose_kept_ranks_globally_after_per_layer_normalisation_and_keeps_one_per_layer():
    scores = [torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 0.1, 0.1, 0.1])]
    # normalised: layer 0 ~ [.18 .37 .55 .73]; layer 1 ~ [1.0 .01 .01 .01]
    assert structure.choose_kept(scores, 0.375) == [[0, 1, 2, 3], [0]]  # the three near-zero units of layer 1 go first
    assert structure.choose_kept(scores, 0.5) == [[1, 2, 3], [0]]
    assert structure.choose_kept(scores, 0.99) == [[3], [0]]  # never a layer without units


def test_shrinking_heads_and_neurons_removes_exactly_their_contribution(tiny_bert_dir):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=2).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 14, 15, 3, 0]])
    mask = (ids != 0).long()
    layout = structure.layout_for(model)
    # zeroing a head's output-projection columns and an FFN neuron's down-projection column = removing them
    zeroed = BertForSequenceClassification.from_pretrained(str(tiny_bert_dir), num_labels=2).eval()
    zeroed.load_state_dict(model.state_dict())
    with torch.no_grad():
        zeroed.bert.encoder.layer[0].attention.output.dense.weight[:, 16:32] = 0  # head 1 of layer 0 (head size 16)
        zeroed.bert.encoder.layer[1].output.dense.weight[:, [3, 7]] = 0
        expected = zeroed(input_ids=ids, attention_mask=mask).logits
    structure.prune_units(model, layout, [[0], [0, 1]], "heads")
    structure.prune_units(model, layout, [list(range(64)), [i for i in range(64) if i not in (3, 7)]], "ffn")
    assert model.bert.encoder.layer[0].attention.self.query.out_features == 16
    assert model.bert.encoder.layer[1].intermediate.dense.out_features == 62
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, expected, rtol=1e-5, atol=1e-6)
    assert structure.count_units(model, layout) == {"ffn_neurons": 126, "heads": 3}


def test_magnitude_masks_zero_the_smallest_weights():
    layer = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with torch.no_grad():
        layer[0].weight.copy_(torch.arange(16.0).view(4, 4) - 7.5)
    masks = structure.magnitude_masks(layer, ["0"], 0.5)
    structure.apply_masks(layer, masks)
    assert structure.sparsity_of(layer, ["0"]) == 0.5
    assert (layer[0].weight.abs() >= 4).sum() == 8 and (layer[0].weight == 0).sum() == 8


def test_structured_prune_with_recovery_writes_a_smaller_run_that_loads(tiny_cls_run, tmp_path):
    out = tmp_path / "pruned"
    assert (
        cli.main(
            [
                "prune",
                str(tiny_cls_run),
                str(out),
                "--method",
                "structured",
                "--heads",
                "0.5",
                "--ffn",
                "0.25",
                "--recover-steps",
                "2",
                "--importance-rows",
                "32",
                "--latency-examples",
                "4",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    record = json.loads((out / "cost.json").read_text())
    assert record["pruned"] == {"heads": "2/4", "ffn_neurons": "96/128"}
    assert record["recovery"]["steps"] == 2 and (out / "recovery" / "metrics.jsonl").is_file()
    assert record["result"]["parameters"] < record["source"]["parameters"]
    assert [r["level"] for r in record["sweep"]][0] == 0.0 and len(record["sweep"]) == 6
    assert (out / "prune.png").stat().st_size > 1000 and "Accuracy vs sparsity" in (out / "cost.md").read_text()
    loaded = runs.load_run(out)
    assert loaded.model.bert.encoder.layer[0].attention.self.query.out_features in (16, 32)
    assert cli.main(["eval", str(out), "--data", str(tiny_cls_run.parent / "train.tsv")]) == 0
    # a pruned run can be quantized in turn (its shapes travel in the format record)
    assert (
        cli.main(["quantize", str(out), str(tmp_path / "pq"), "--scheme", "int8-dynamic", "--latency-examples", "2"])
        == 0
    )
    assert runs.load_run(tmp_path / "pq").model is not None


def test_magnitude_prune_keeps_zeros_through_recovery(tiny_cls_run, tmp_path):
    out = tmp_path / "sparse"
    assert (
        cli.main(
            [
                "prune",
                str(tiny_cls_run),
                str(out),
                "--method",
                "magnitude",
                "--sparsity",
                "0.5",
                "--recover-steps",
                "2",
                "--latency-examples",
                "2",
            ]
        )
        == 0
    )
    from tunelab.compress.quantize import target_linears

    model = runs.load_run(out).model
    assert structure.sparsity_of(model, target_linears(model)) >= 0.5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "magnitude", "--heads", "0.3"], "takes --sparsity"),
        (["--method", "structured", "--sparsity", "0.3"], "takes --heads"),
        (["--method", "structured", "--heads", "1.5"], "fraction in [0, 1)"),
    ],
)
def test_prune_argument_errors(argv, message, tiny_cls_run, tmp_path, capsys):
    assert cli.main(["prune", str(tiny_cls_run), str(tmp_path / "x"), *argv]) == 2
    assert message in capsys.readouterr().err
