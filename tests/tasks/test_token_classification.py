"""Token classification: alignment, windows, merge, metrics, and training through the recipe and the CLI."""

import json
import random
import time

import pytest
import torch

from tunelab import config
from tunelab.data.collate import pad_batch
from tunelab.data.conll import Sentence
from tunelab.errors import ConfigError, DataError
from tunelab.tasks import token_classification as tc
from tunelab.training import evaluation

LABELS = ["O", "B-PER", "I-PER", "B-WORK", "I-WORK"]


def write_ner(path, n=120, seed=0):
    """A learnable toy CoNLL file: 'actor' is a person, 'film story' a work, the rest is O."""
    rng = random.Random(seed)
    filler = "the a is was it this that of to in on with and but very good bad".split()
    blocks = []
    for _ in range(n):
        chunks = [[(w, "O")] for w in rng.sample(filler, rng.randint(2, 6))]
        for ent in rng.sample([[("actor", "B-PER")], [("film", "B-WORK"), ("story", "I-WORK")]], rng.randint(1, 2)):
            chunks.insert(rng.randint(0, len(chunks)), ent)
        blocks.append("\n".join(f"{w}\t{t}" for chunk in chunks for w, t in chunk))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert_dir))


# ---------------------------------------------------------------- alignment


def test_first_subword_alignment_by_hand(tokenizer):
    # 'actor' is one piece; 'xyz' is not in the vocabulary -> x ##y ##z
    row = Sentence(["the", "xyz", "actor"], ["O", "B-PER", "I-PER"], 1)
    (f,) = tc.encode([row], tokenizer, LABELS, 32, "s")
    assert tokenizer.convert_ids_to_tokens(f["input_ids"]) == ["[CLS]", "the", "x", "##y", "##z", "actor", "[SEP]"]
    assert f["labels"] == [-100, 0, 1, -100, -100, 2, -100]
    assert f["_words"] == [-1, 0, 1, -1, -1, 2, -1]
    (g,) = tc.encode([row], tokenizer, LABELS, 32, "s", tc.Windowing(label_all_subwords=True))
    assert g["labels"] == [-100, 0, 1, 2, 2, 2, -100]  # continuation pieces of a B-PER word are I-PER


def test_word_without_subwords_is_predicted_o(tokenizer):
    row = Sentence(["the", "\ufeff", "actor"], ["O", "O", "B-PER"], 1)
    (f,) = tc.encode([row], tokenizer, LABELS, 32, "s")
    assert f["_words"] == [-1, 0, 2, -1]
    tags, probs = tc.decode(
        {0: torch.log(torch.tensor([0.9, 0.1, 0, 0, 0])), 2: torch.log(torch.tensor([0.2, 0.8, 0, 0, 0]))}, 3, LABELS
    )
    assert tags == ["O", "O", "B-PER"] and probs[2] == pytest.approx(0.8)


def test_unknown_tag_and_bad_stride(tokenizer):
    with pytest.raises(DataError, match=r"dev.conll:7: tag 'B-LOC' was not seen in training; known tags: O, B-PER"):
        tc.encode([Sentence(["a"], ["B-LOC"], 7)], tokenizer, LABELS, 32, "dev.conll")
    tc.encode(
        [Sentence(["a"], ["O"], 1)], tokenizer, LABELS, 32, "s", tc.Windowing(stride=30)
    )  # fits one window: stride unused
    with pytest.raises(
        ConfigError, match=r"task.stride \(30\) must be smaller than the window of 30 sub-words .* sentence at s:3"
    ):
        tc.encode([Sentence(["a"] * 40, ["O"] * 40, 3)], tokenizer, LABELS, 32, "s", tc.Windowing(stride=30))


def test_windows_cut_at_word_starts_and_overlap():
    words = [0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6, 7]  # word index of each sub-word
    spans = tc.windows(words, capacity=5, stride=2)
    # (0,5) would cut word 2 -> (0,3); the next window starts 2 back at a word start (pos 1 is inside word 0 -> pos 2)
    assert spans == [(0, 3), (2, 7), (3, 8), (6, 11), (8, 12)]
    assert tc.windows(words, capacity=5, stride=0) == [(0, 3), (3, 8), (8, 12)]
    covered = {w for a, b in spans for i in range(a, b) for w in [words[i]] if i == 0 or words[i - 1] != w}
    assert covered == set(words)  # every word's first piece lies in some window
    assert tc.windows([0] * 12, capacity=5, stride=1) == [(0, 5), (4, 9), (8, 12)]  # one huge word: cut inside it
    assert tc.windows(words, capacity=20, stride=4) == [(0, 12)]


def test_long_sentence_is_windowed_never_truncated(tokenizer):
    words = ["the", "actor", "was", "very", "good"] * 12  # 60 words, one piece each
    tags = ["O", "B-PER", "O", "O", "O"] * 12
    feats = tc.encode([Sentence(words, tags, 1)], tokenizer, LABELS, 16, "s", tc.Windowing(stride=4))
    assert len(feats) > 1 and all(len(f["input_ids"]) <= 16 for f in feats)
    labelled = {w for f in feats for w in f["_words"] if w >= 0}
    assert labelled == set(range(60))


def test_merge_takes_the_window_with_most_context():
    # two windows over a 6-word sentence: words 2-3 appear in both
    f1 = {"_sent": 0, "_n": 6, "_words": [-1, 0, 1, 2, 3, -1]}
    f2 = {"_sent": 0, "_n": 6, "_words": [-1, 2, 3, 4, 5, -1]}
    s1 = torch.full((6, 5), -5.0)
    s2 = torch.full((6, 5), -5.0)
    s1[:, 1] = 0.0  # window 1 says B-PER everywhere
    s2[:, 3] = 0.0  # window 2 says B-WORK everywhere
    merged = tc.merge_windows([f1, f2], [s1, s2])[0]
    # word 2: context 2 in window 1 (pos 3, edges 1..4 -> min(2,1)=1) vs window 2 (pos 1 -> 0): window 1
    # word 3: window 1 pos 4 -> 0; window 2 pos 2 -> 1: window 2
    picked = {w: int(v.argmax()) for w, v in merged.items()}
    assert picked == {0: 1, 1: 1, 2: 1, 3: 3, 4: 3, 5: 3}


def test_metrics_by_hand():
    y_true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    y_pred = [["B-PER", "I-PER", "O", "B-PER"], ["B-LOC", "B-LOC"]]
    m = tc.metrics(y_true, y_pred)
    # gold: PER(0-2), LOC(3), LOC(0); predicted: PER(0-2), PER(3), LOC(0), LOC(1) -> 2 correct of 4 predicted, 3 gold
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m["per_type"]["PER"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert m["per_type"]["LOC"]["recall"] == 0.5
    assert m["macro_f1"] == pytest.approx((2 / 3 + m["per_type"]["LOC"]["f1"]) / 2)
    assert m["token_accuracy"] == pytest.approx(4 / 6)
    assert m["confusions"] == [{"true": "LOC", "pred": "PER", "count": 1}, {"true": "O", "pred": "LOC", "count": 1}]


def test_loss_ignores_unlabelled_positions():
    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            out = torch.zeros(*input_ids.shape, 2)
            out[..., 0] = 2.0
            return type("O", (), {"logits": out})()

    batch = {
        "input_ids": torch.zeros(1, 4, dtype=torch.long),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "labels": torch.tensor([[-100, 0, 1, -100]]),
    }
    task = tc.TokenClassification()
    loss, n = task.loss(task.forward(Fixed(), batch), batch)
    lse = torch.logsumexp(torch.tensor([2.0, 0.0]), 0)
    assert n == 2 and float(loss) == pytest.approx(float((lse - 2) + lse))


def test_head_is_the_classifier(tiny_bert_dir):
    from tunelab.models import load as model_load

    src = model_load.resolve(str(tiny_bert_dir))
    model, head = model_load.load_model(src, tc.TokenClassification.auto_class, **tc.model_kwargs(LABELS))
    assert head == ["classifier"] and model.classifier.out_features == len(LABELS)


# ---------------------------------------------------------------- end to end


def ner_config(tmp_path, tiny_bert_dir, method="full", **extra):
    train, dev = write_ner(tmp_path / "train.conll"), write_ner(tmp_path / "dev.conll", n=40, seed=1)
    overrides = [
        "task=token_classification",
        f"output_dir={tmp_path / 'run'}",
        f"model.name={tiny_bert_dir}",
        "model.max_length=16",
        "task.stride=4",
        f"data.train={train}",
        f"data.dev={dev}",
        f"method.name={method}",
        "train.epochs=8",
        "train.batch_size=16",
        "train.lr=1e-2",
        "train.precision=fp32",
        "train.warmup_fraction=0.0",
    ]
    return config.load(None, overrides + [f"{k}={v}" for k, v in extra.items()])


@pytest.mark.parametrize("method", ["full", "freeze", "lora"])
def test_train_eval_predict(tmp_path, tiny_bert_dir, method, capsys, monkeypatch):
    import io

    from tunelab import cli
    from tunelab.recipes import finetune

    extra = (
        {"method.layers": 1} if method == "freeze" else {"method.r": 8, "train.lr": 3e-2} if method == "lora" else {}
    )
    cfg = ner_config(tmp_path, tiny_bert_dir, method, **extra)
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    assert final["dev"]["f1"] >= 0.9, final["dev"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Per entity type (dev)" in report and "| WORK |" in report
    assert cli.main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "dev.conll")]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == pytest.approx(final["dev"]["f1"])
    monkeypatch.setattr(
        "sys.stdin", io.StringIO('the good actor was in the film story\n{"tokens": ["a", "film", "story"]}\n')
    )
    assert cli.main(["predict", str(tmp_path / "run")]) == 0
    raw, pre = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [(e["type"], e["text"], e["start"], e["end"]) for e in raw["entities"]] == [
        ("PER", "actor", 9, 14),
        ("WORK", "film story", 26, 36),
    ]
    assert all(0.5 < e["score"] <= 1 for e in raw["entities"])
    assert pre["text"] == "a film story" and [(e["type"], e["start"], e["end"]) for e in pre["entities"]] == [
        ("WORK", 2, 12)
    ]


def test_long_input_prediction_uses_windows(tmp_path, tiny_bert_dir):
    from tunelab import runs
    from tunelab.recipes import finetune

    cfg = ner_config(tmp_path, tiny_bert_dir)
    finetune.run(cfg, quiet=True, log=lambda m: None)
    loaded = runs.load_run(tmp_path / "run")
    words = "the actor was good and the film story was bad".split() * 5  # 50 words, window holds 14
    (out,) = tc.predict(
        loaded.model, loaded.tokenizer, loaded.labels, [Sentence(words, None, 1)], 16, tc.Windowing(stride=4)
    )
    assert len(out["tags"]) == 50
    assert [e["text"] for e in out["entities"]] == ["actor", "film story"] * 5


@pytest.mark.real
def test_wnut17_loads_and_trains_a_few_steps(shared_data, tmp_path):
    from tunelab.recipes import finetune

    cfg = config.load(
        "examples/ner/wnut17.yaml",
        [
            f"output_dir={tmp_path / 'run'}",
            f"data.train={shared_data / 'wnut17/train.conll'}",
            f"data.dev={shared_data / 'wnut17/dev.conll'}",
            "train.max_steps=4",
            "train.batch_size=8",
            "data.max_dev_rows=64",
        ],
    )
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    assert final["steps"] == 4 and set(final["dev"]["per_type"]) <= {
        "corporation",
        "creative-work",
        "group",
        "location",
        "person",
        "product",
    }
    assert final["dev"]["loss"] < 3.0


@pytest.mark.real
def test_wikiann_minilm_reaches_f1(shared_data, tmp_path):
    """minilm-l6, full fine-tuning, bf16, 5,000 training sentences; dev = the first 2,000 WikiANN dev sentences."""
    from tunelab.recipes import finetune

    cfg = config.load(
        "examples/ner/wikiann.yaml",
        [
            f"output_dir={tmp_path / 'run'}",
            f"data.train={shared_data / 'wikiann-en/train'}",
            f"data.dev={shared_data / 'wikiann-en/dev'}",
        ],
    )
    start = time.perf_counter()
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    print(f"wikiann: dev f1 {final['dev']['f1']:.4f} in {time.perf_counter() - start:.0f} s")
    assert final["dev"]["f1"] >= 0.72, final["dev"]


def test_without_dev_file_a_dev_split_is_carved_out(tmp_path, tiny_bert_dir):
    from tunelab.recipes import finetune

    cfg = ner_config(tmp_path, tiny_bert_dir, **{"data.dev": "null", "train.max_steps": 2})
    logs = []
    final = finetune.run(cfg, quiet=True, log=logs.append)
    assert any("held out 12 of 120 training rows" in m for m in logs), logs
    assert final["steps"] == 2 and 0 <= final["dev"]["f1"] <= 1


@pytest.mark.parametrize("method", sorted(__import__("tunelab.methods", fromlist=["METHODS"]).METHODS))
def test_every_method_trains_reloads_and_predicts(tmp_path, tiny_bert_dir, method):
    """A few steps with each method: loss and logits line up with the words (prompt methods add virtual
    positions), the run folder rebuilds the same model, and predictions decode."""
    from tunelab import runs
    from tunelab.recipes import finetune

    extra = {"method.num_virtual_tokens": 4} if method in ("prompt-tuning", "p-tuning", "prefix") else {}
    cfg = ner_config(tmp_path, tiny_bert_dir, method, **{"train.max_steps": 3, **extra})
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    assert final["dev"]["loss"] < 5 and sum(final["dev"]["per_type"][t]["support"] for t in ("PER", "WORK")) > 0
    loaded = runs.load_run(tmp_path / "run")
    feats = tc.encode(
        [Sentence(["the", "actor", "film", "story"], ["O", "B-PER", "B-WORK", "I-WORK"], 1)],
        loaded.tokenizer,
        loaded.labels,
        16,
        "s",
    )
    again = evaluation.evaluate(tc.evaluator(feats, loaded.labels, lambda b: pad_batch(b, 0)), loaded.model)
    assert 0 <= again["token_accuracy"] <= 1
    (out,) = tc.predict(loaded.model, loaded.tokenizer, loaded.labels, [Sentence(["the", "actor"], None, 1)], 16)
    assert len(out["tags"]) == 2
