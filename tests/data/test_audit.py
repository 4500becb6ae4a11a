"""`tunelab data audit` end to end on tiny files with known problems at known lines (classification, NER, instructions)."""

import json

import numpy as np

from tunelab import cli

TRAIN = [
    "sentence\tlabel",
    "a great film\t1",  # 2
    "a great film \t1",  # 3 exact duplicate of 2
    "terrible plot\t0",  # 4
    "terrible plot\t1",  # 5 conflicting duplicate of 4
    "the acting was wonderful and moving\t1",  # 6
    "the acting was wonderful and moving!\t1",  # 7 near duplicate of 6
    "   \t1",  # 8 empty text
    "cafÃ© scenes\t1",  # 9 mojibake
    "only one column",  # 10 unreadable
    "a plain row about nothing\t0",  # 11
    "boring and slow\t0",
]  # 12
DEV = [
    "sentence\tlabel",
    "a great film\t1",  # 2 also in train
    "the acting was wonderful and moving.\t1",  # 3 nearly in train
    "something new entirely\t0",
]  # 4


def write_classification(tmp_path):
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    dev.write_text("\n".join(DEV) + "\n", encoding="utf-8")
    return train, dev


def refs(data, check):
    f = next((f for f in data["findings"] if f["check"] == check), None)
    return [[r.split(":")[-1] for r in row["refs"]] for row in f["rows"]] if f else []


def test_classification_findings_with_lines(tmp_path):
    train, dev = write_classification(tmp_path)
    out = tmp_path / "audit"
    assert cli.main(["data", "audit", str(train), str(dev), "data.text_column=sentence", "--out", str(out)]) == 0
    data = json.loads((out / "audit.json").read_text())
    assert data["summary"] == {
        "empty": 1,
        "unreadable": 1,
        "exact_duplicates": 2,
        "conflicting_duplicates": 2,
        "near_duplicates": 1,
        "leakage_exact": 1,
        "leakage_near": 1,
        "encoding": 1,
    }
    assert refs(data, "exact_duplicates") == [["2", "3"], ["4", "5"]]
    assert refs(data, "conflicting_duplicates") == [["4", "5"]]
    assert refs(data, "near_duplicates") == [["6", "7"]]
    assert refs(data, "empty") == [["8"]] and refs(data, "unreadable") == [["10"]] and refs(data, "encoding") == [["9"]]
    leak = next(f for f in data["findings"] if f["check"] == "leakage_exact")["rows"][0]["refs"]
    assert leak == [f"{train}:2", f"{dev}:2"]
    assert {tuple(r) for r in refs(data, "leakage_near")} <= {("6", "3"), ("7", "3")}
    assert data["stats"]["labels"] == {"train": {"0": 3, "1": 6}, "dev": {"0": 1, "1": 2}}
    assert data["stats"]["lengths"]["train"]["over_limit"] == 0
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert f"{train}:4, {train}:5" in md and "duplicates with conflicting labels" in md
    assert "<script" not in html and "http" not in html.replace(str(tmp_path), "") and f"{dev}:2" in html


def test_config_input_and_skips(tmp_path):
    train, dev = write_classification(tmp_path)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"data:\n  train: {train}\n  dev: {dev}\n  text_column: sentence\nmodel:\n  max_length: 8\n", encoding="utf-8"
    )
    out = tmp_path / "a"
    assert cli.main(["data", "audit", str(cfg), "--out", str(out), "--skip", "near_duplicates,leakage,language"]) == 0
    data = json.loads((out / "audit.json").read_text())
    assert "near_duplicates" not in data["summary"] and "leakage_exact" not in data["summary"]
    assert data["summary"]["too_long"] == 2  # rows over 8 tokens of minilm-l6 ([CLS] + words + [SEP])
    assert refs(data, "too_long") == [["7"], ["3"]]  # train:7 and dev:3 (9 tokens each)


def test_ner_findings(tmp_path):
    blocks = ["en:Ann\tB-PER\nen:met\tO\nen:Bo\tB-PER"] * 6
    blocks.append("\n".join(["en:A\tB-PER"] + ["en:x\tI-PER"] * 9))  # a 10-token person: an outlier
    blocks.append("en:the\tO\nen:Lee\tI-PER")  # an I- that opens an entity
    path = tmp_path / "ner.conll"
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    out = tmp_path / "a"
    assert cli.main(["data", "audit", str(path), 'task.token_prefix="en:"', "--out", str(out)]) == 0
    data = json.loads((out / "audit.json").read_text())
    assert data["task"] == "token_classification"
    assert refs(data, "entity_length_outliers") == [["25"]]
    assert refs(data, "unreadable") == [["37"]] and "invalid tag sequence" in data["findings"][0]["rows"][0]["reason"]
    assert refs(data, "exact_duplicates") == [["1", "5", "9", "13", "17", "21"]]
    assert data["stats"]["entities"]["train"] == {"PER": 13}


def test_instruction_findings(tmp_path, tiny_llama_dir):
    rows = [
        {"instruction": "Name a colour", "input": "", "output": "Red"},
        {"instruction": "Name a colour", "input": "", "output": "Blue"},
        {"instruction": "Say hi", "input": "", "output": "  "},
        {"instruction": " ".join(["word"] * 80), "input": "", "output": "ok"},
    ]
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    out = tmp_path / "a"
    assert (
        cli.main(["data", "audit", str(path), "model.max_length=64", f"model.name={tiny_llama_dir}", "--out", str(out)])
        == 0
    )
    data = json.loads((out / "audit.json").read_text())
    assert data["task"] == "causal_lm"
    assert refs(data, "duplicate_instructions") == [["2", "7"]]
    assert refs(data, "conflicting_duplicates") == [["2", "7"]]
    assert refs(data, "empty") == [["12"]]
    assert refs(data, "prompt_too_long") == [["17"]]


def test_label_issues_on_separable_features():
    from tunelab.data import labelnoise

    rng = np.random.default_rng(0)
    y = np.array([0] * 100 + [1] * 100)
    x = rng.normal(size=(200, 8)) + 5 * y[:, None]
    noisy = y.copy()
    flipped = [3, 40, 77, 120, 150, 199]
    noisy[flipped] = 1 - noisy[flipped]
    probs = labelnoise.out_of_fold_probs(x, list(noisy), folds=5, seed=0)
    assert probs.shape == (200, 2) and np.allclose(probs.sum(1), 1)
    assert (probs.argmax(1)[flipped] == y[flipped]).all()  # out of fold, the model sides with the true label
    # confident learning on hand-made probabilities: rows 1 and 4 are confidently the other class
    given = [0, 0, 0, 1, 1, 1, 0, 1]
    hand = np.array(
        [[0.9, 0.1], [0.05, 0.95], [0.8, 0.2], [0.1, 0.9], [0.97, 0.03], [0.2, 0.8], [0.7, 0.3], [0.3, 0.7]]
    )
    assert labelnoise.label_issues(given, hand, "prune") == [4, 1]  # ranked: lowest self-confidence first
    assert labelnoise.label_issues(given, hand, "estimate") == [4, 1]  # cleanlab estimates two issues here
    # estimate: the count comes from cleanlab, the order from the label-quality score
    from cleanlab.count import num_label_issues

    ranked = labelnoise.label_issues(list(noisy), probs, "estimate")
    assert len(ranked) == num_label_issues(noisy, probs, estimation_method="off_diagonal_calibrated")
    quality = probs[np.arange(200), noisy]
    assert list(quality[ranked]) == sorted(quality)[: len(ranked)]  # the lowest-quality rows, in order
    assert ranked and set(ranked) <= set(flipped)


def test_finetune_probe_gives_out_of_fold_probabilities(tmp_path, tiny_bert_dir):
    """--label-probe finetune: one tunelab fine-tune per fold; every row is scored by the fold that did not train on it."""
    from tests.conftest import write_sentiment
    from tunelab.data import labelnoise
    from tunelab.data.sources import read_table

    rows = read_table(str(write_sentiment(tmp_path / "s.tsv", n=24)), text_column="sentence").rows
    y = [int(r.label) for r in rows]
    probs = labelnoise.finetune_probs([r.text for r in rows], y, ["0", "1"], str(tiny_bert_dir), folds=2)
    assert probs.shape == (24, 2)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-4) and (probs > 0).all()  # every row got its held-out fold's scores


def _noisy_blobs(seed: int, n: int, shift: float):
    """Two classes of ``n`` 6-d Gaussian points ``shift`` apart, 10% of labels flipped: (y, x, noisy, flipped)."""
    rng = np.random.default_rng(seed)
    y = np.array([0] * n + [1] * n)
    x = rng.normal(size=(2 * n, 6)) + shift * y[:, None]
    noisy = y.copy()
    flipped = rng.choice(2 * n, n // 5, replace=False)
    noisy[flipped] = 1 - noisy[flipped]
    return y, x, noisy, flipped


def test_posterior_cutoff_flags_rows_more_likely_wrong_than_right():
    """posterior: P(wrong) by Bayes' rule on cleanlab's noise matrix; flagged iff >= 0.5, most likely first."""
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities

    from tunelab.data import labelnoise

    y, x, noisy, flipped = _noisy_blobs(seed=1, n=150, shift=2.5)
    probs = labelnoise.out_of_fold_probs(x, list(noisy), folds=5, seed=0)
    wrong = labelnoise.wrong_label_probability(noisy, probs)
    # by hand: T[i, j] = P(given i | true j); P(right | x, g) = T[g, g] p_g / sum_j T[g, j] p_j
    _, t, _, _ = estimate_py_and_noise_matrices_from_probabilities(noisy, probs)
    k = np.arange(300)
    hand = 1 - t[noisy, noisy] * probs[k, noisy] / (probs @ t.T)[k, noisy]
    assert np.allclose(wrong, hand)
    # invert: P(true | x) solved from probs = P(true | x) @ T.T first
    true = np.clip(np.linalg.solve(t, probs.T).T, 0, None)
    true /= true.sum(1, keepdims=True)
    inv = 1 - t[noisy, noisy] * true[k, noisy] / (true @ t.T)[k, noisy]
    assert np.allclose(labelnoise.wrong_label_probability(noisy, probs, invert=True), np.clip(inv, 0, 1))
    ranked = labelnoise.label_issues(list(noisy), probs, "posterior")
    assert sorted(ranked) == sorted(np.flatnonzero(wrong >= 0.5).tolist())
    assert list(wrong[ranked]) == sorted(wrong[ranked], reverse=True)  # most likely wrong first
    hits = len(set(ranked) & set(flipped.tolist()))
    # measured: 11 flagged, all 11 flipped (of 30): the rule is conservative, flagged rows are nearly always wrong
    assert len(ranked) >= 10 and hits >= 0.9 * len(ranked), (hits, len(ranked))
    # a row the probe is sure about, given its likely label, is never flagged
    assert wrong[np.argmax(probs[k, noisy])] < 0.5


def test_probe_ensemble_averages_each_models_out_of_fold_probabilities():
    from tunelab.data import labelnoise

    rng = np.random.default_rng(2)
    y = [0] * 40 + [1] * 40
    a = rng.normal(size=(80, 5)) + np.array(y)[:, None]
    b = rng.normal(size=(80, 3)) * 10 + 30 * np.array(y)[:, None]  # another scale: each probe standardises its input
    both = labelnoise.out_of_fold_probs([a, b], y, folds=4, seed=0)
    one = [labelnoise.out_of_fold_probs(f, y, folds=4, seed=0) for f in (a, b)]
    assert np.allclose(both, (one[0] + one[1]) / 2)
    assert (both.argmax(1) == y).mean() > 0.9


def test_embeddings_are_cached_and_causal_lms_pool_without_padding_effects(tiny_llama_dir, monkeypatch):
    from tunelab.data import labelnoise

    texts = ["a fine film", "one of the most tedious and overlong pictures of the year, sadly", "ok"]
    first = labelnoise.embed(texts, str(tiny_llama_dir), batch_size=3)
    assert first.shape == (3, 32) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
    alone = labelnoise.embed(texts[:1], str(tiny_llama_dir), batch_size=1)
    assert np.allclose(alone[0], first[0], atol=1e-5)  # padded on the right: a row does not see its batch
    assert np.array_equal(labelnoise.embed(texts, str(tiny_llama_dir), layer=1), first)  # a causal LM: middle layer
    assert not np.allclose(labelnoise.embed(texts, str(tiny_llama_dir), layer=-1), first)

    def no_model(*a, **k):
        raise AssertionError("the model ran again")

    monkeypatch.setattr(labelnoise, "_pooled", no_model)
    assert np.array_equal(labelnoise.embed(texts, str(tiny_llama_dir), batch_size=3), first)  # from the cache


def test_label_model_and_folds_errors(tmp_path, capsys):
    train, _ = write_classification(tmp_path)
    base = ["data", "audit", str(train), "data.text_column=sentence"]
    assert cli.main([*base, "--out", str(tmp_path / "a"), "--label-probe", "finetune", "--label-model", "x,y"]) == 2
    assert "--label-probe finetune fine-tunes one model, found 2 (x,y)" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "b"), "--label-model", " , "]) == 2
    assert "--label-model: expected one or more comma-separated model names" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "c"), "--folds", "1"]) == 2
    assert "--folds: expected 2 or more" in capsys.readouterr().err
    for probe in ("embeding", "finetune,finetune", ","):
        assert cli.main([*base, "--out", str(tmp_path / "d"), "--label-probe", probe]) == 2
        assert "--label-probe: expected one or both of embedding, finetune" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # refused before anything was written


def test_embedding_and_finetune_probes_are_averaged(monkeypatch):
    """--label-probe embedding,finetune: each probe's out-of-fold probabilities, averaged; finetune tunes the first model."""
    from tunelab.data import labelnoise

    texts, labels = [f"t{i}" for i in range(6)], ["a", "b", "a", "b", "a", "b"]
    emb = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.8, 0.2], [0.1, 0.9]])
    ft = np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    seen = {}
    monkeypatch.setattr(labelnoise, "embed", lambda texts, model, log=None: model)
    monkeypatch.setattr(labelnoise, "out_of_fold_probs", lambda feats, y, folds, seed: emb)

    def finetune(texts, y, names, model, folds, seed, log):
        seen["tuned"] = model
        return ft

    monkeypatch.setattr(labelnoise, "finetune_probs", finetune)
    _, probs, names = labelnoise.find(texts, labels, "m1,m2", probe="embedding,finetune", cutoff="estimate")
    assert names == ["a", "b"] and np.allclose(probs, (emb + ft) / 2) and seen["tuned"] == "m1"
    assert labelnoise.describe_probe("embedding,finetune").endswith("(probabilities averaged)")


def test_calibrated_cutoff_scales_then_undoes_the_noise():
    """calibrated: temperature-scale the probabilities to the given labels, undo the noise matrix, Bayes' rule."""
    from tunelab.data import labelnoise

    y, x, noisy, flipped = _noisy_blobs(seed=3, n=200, shift=1.5)
    sharp = labelnoise.out_of_fold_probs(x, list(noisy), folds=5, seed=0)
    flat = (sharp + 0.5) / 2  # an average with an uninformed probe: too flat, as averaged probes come out
    t = labelnoise.temperature(noisy, flat)
    assert t < 1  # flat probabilities get sharper

    def nll(p):
        return -np.log(p[np.arange(400), noisy]).mean()

    scaled = labelnoise.calibrate(noisy, flat)
    by_hand = flat ** (1 / t) / (flat ** (1 / t)).sum(1, keepdims=True)
    assert np.allclose(scaled, by_hand)
    for other in (t * 0.9, t * 1.1):  # the fitted temperature is the best one for the given labels
        q = flat ** (1 / other) / (flat ** (1 / other)).sum(1, keepdims=True)
        assert nll(scaled) <= nll(q)
    wrong = labelnoise.wrong_label_probability(noisy, scaled, invert=True)
    ranked = labelnoise.label_issues(list(noisy), flat, "calibrated")
    assert sorted(ranked) == sorted(np.flatnonzero(wrong >= 0.5).tolist())
    assert list(wrong[ranked]) == sorted(wrong[ranked], reverse=True)
    strict = labelnoise.label_issues(list(noisy), flat, "posterior")
    hits = len(set(ranked) & set(flipped.tolist()))
    # measured: on these flat probabilities posterior flags no row, calibrated 32 (31 of them flipped, of 40)
    assert len(strict) < len(ranked) / 2 and len(ranked) >= 25 and hits >= 0.9 * len(ranked), (
        len(strict),
        hits,
        len(ranked),
    )
    # a probe that disagrees with most given labels (as a weak probe on few rows can): cleanlab's noise matrix then
    # says most labels are wrong, it is not undone, and calibrated keeps posterior's list
    given = np.array([0] * 50 + [1] * 50)
    against = np.array([[0.9, 0.1]] * 10 + [[0.1, 0.9]] * 40 + [[0.9, 0.1]] * 40 + [[0.1, 0.9]] * 10)
    assert not labelnoise.invertible(given, labelnoise.calibrate(given, against))
    undone = labelnoise.wrong_label_probability(given, labelnoise.calibrate(given, against), invert=True)
    assert (undone >= 0.5).all()  # undoing it anyway would flag every row
    assert labelnoise.label_issues(list(given), against, "calibrated") == labelnoise.label_issues(
        list(given), against, "posterior"
    )
