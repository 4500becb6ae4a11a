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


# ---------------------------------------------------------------- imbalance: class weights, focal loss, balanced sampler


def test_balanced_class_weights_and_explicit_ones():
    assert clf.class_weights("balanced", [0, 0, 0, 1], ["neg", "pos"], "f") == [4 / 6, 4 / 2]
    assert clf.class_weights({"pos": 3.0}, [0, 1], ["neg", "pos"], "f") == [1.0, 3.0]
    assert clf.class_weights(None, [0, 1], ["neg", "pos"], "f") is None
    with pytest.raises(
        DataError, match="train.class_weights: label 'maybe' is not in the training data of f; labels: neg, pos"
    ):
        clf.class_weights({"maybe": 2.0}, [0, 1], ["neg", "pos"], "f")


def test_weighted_and_focal_loss_hand_computed():
    logits, labels = torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1])
    out, batch = {"logits": logits}, {"labels": labels}
    nll = -torch.log_softmax(logits, -1)[torch.arange(2), labels]
    plain, n = clf.weighted_loss(out, batch)
    assert n == 2 and torch.isclose(plain, torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
    weighted, _ = clf.weighted_loss(out, batch, weights=[1.0, 3.0])
    assert torch.isclose(weighted, nll[0] + 3 * nll[1])
    focal, _ = clf.weighted_loss(out, batch, gamma=2.0)
    p = torch.exp(-nll)
    assert torch.isclose(focal, ((1 - p) ** 2 * nll).sum())


def test_balanced_sampler_draws_classes_evenly_and_is_seeded():
    from tunelab.training.sampler import Balanced

    groups = [0] * 90 + [1] * 10
    s = Balanced(groups, batch_size=20, seed=3)
    plan = s.batches(0)
    assert len(plan) == s.steps_per_epoch() == 5 and sum(len(b) for b in plan) == 100
    minority = sum(groups[i] for b in plan for i in b)
    assert 35 <= minority <= 65  # ~half the draws, not ~10%
    assert plan == Balanced(groups, 20, 3).batches(0) and plan != s.batches(1)


def test_imbalance_options_are_refused_for_tasks_that_do_not_balance():
    from tunelab import config
    from tunelab.errors import ConfigError

    for opt in ("train.class_weights=balanced", "train.focal_gamma=2", "train.sampler=balanced"):
        with pytest.raises(ConfigError, match=rf"{opt.split('=')[0]}: task token_classification does not weigh"):
            config.load(None, ["task=token_classification", opt])
    with pytest.raises(ConfigError, match="train.class_weights: expected 'balanced' or a mapping"):
        config.load(None, ["train.class_weights={pos: -1}"])
    assert config.load(None, ["train.class_weights={1: 2}"]).train.class_weights == {"1": 2.0}


def test_weights_and_balanced_sampler_train_and_are_recorded(tmp_path, tiny_bert_dir):
    from tests.conftest import write_sentiment
    from tunelab import config
    from tunelab.recipes import finetune

    cfg = config.load(
        None,
        [
            f"model.name={tiny_bert_dir}",
            f"data.train={write_sentiment(tmp_path / 'train.tsv', n=48)}",
            "data.text_column=sentence",
            f"output_dir={tmp_path / 'run'}",
            "train.class_weights={0: 2.0}",
            "train.focal_gamma=1",
            "train.sampler=balanced",
            "train.max_steps=3",
            "train.batch_size=8",
            "train.precision=fp32",
        ],
    )
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    assert final["data"]["class_weights"] == {"0": 2.0, "1": 1.0} and final["steps"] == 3
    assert set(final["dev"]["per_class"]) == {"0", "1"}
