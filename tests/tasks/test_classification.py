import pytest
import torch

from tunelab.data.sources import Row
from tunelab.errors import DataError
from tunelab.tasks import classification as clf


def test_metrics_hand_computed():
    m = clf.metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_label_space_orders_integers_numerically_and_rejects_one_class():
    rows = [Row("x", None, str(n), i) for i, n in enumerate([10, 2, 1, 2])]
    assert clf.label_space(rows, "f") == ["1", "2", "10"]
    with pytest.raises(DataError, match="only one class"):
        clf.label_space([Row("x", None, "pos", 1)] * 3, "f")


def test_loss_is_a_sum_so_accumulation_can_normalise():
    class Fixed(torch.nn.Module):
        def forward(self, input_ids, **_):
            return type("O", (), {"logits": torch.tensor([[0.0, 0.0], [2.0, 0.0]])})()

    task, batch = clf.Classification(), {"input_ids": torch.zeros(2, 1), "labels": torch.tensor([0, 0])}
    total, n = task.loss(task.forward(Fixed(), batch), batch)
    expected = torch.log(torch.tensor(2.0)) + torch.log1p(torch.exp(torch.tensor(-2.0)))
    assert n == 2 and torch.isclose(total, expected)


def test_encode_pairs_and_unknown_labels(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    feats = clf.encode([Row("good movie", "bad plot", "1", 2)], tok, ["0", "1"], 32, "f.tsv")
    assert feats[0]["labels"] == 1 and 1 in feats[0]["token_type_ids"]
    with pytest.raises(DataError, match="f.tsv:7: label 'x' was not seen in training"):
        clf.encode([Row("good", None, "x", 7)], tok, ["0", "1"], 32, "f.tsv")
