"""Fairness probes on hand-made inputs: term swaps, flip/shift summaries, EEC pairing and tests, group metrics, CrowS-Pairs."""

from __future__ import annotations

import pytest

from tunelab.errors import DataError
from tunelab.evaluation.fairness import counterfactual as cf
from tunelab.evaluation.fairness import crows_pairs, eec, groups, terms


def test_swap_keeps_case_and_swaps_both_ways():
    g = terms.BUILTIN["gender"]
    assert cf.swap("He told her that His wife left.", g["male"], g["female"]) == "She told his that Her husband left."
    assert cf.swap("MEN and women", g["male"], g["female"]) == "WOMEN and men"
    assert cf.swap("the shepherd", g["male"], g["female"]) == "the shepherd"  # whole words only ("he" inside)


def test_variants_use_the_dominant_group_and_every_other_target():
    rel = terms.BUILTIN["religion"]
    vs = cf.variants("The church choir was lovely", rel)
    assert {v["target"] for v in vs} == set(rel) - {"christian"} and all(v["source"] == "christian" for v in vs)
    assert any(v["text"] == "The mosque choir was lovely" for v in vs)
    assert cf.variants("a plain sentence", rel) == []


def test_summary_flip_rate_and_shift_by_hand():
    probes = [
        {"index": 0, "category": "gender", "source": "male", "target": "female", "text": "x"},
        {"index": 1, "category": "gender", "source": "female", "target": "male", "text": "y"},
    ]
    original = [[0.2, 0.8], [0.6, 0.4]]
    variant = [[0.7, 0.3], [0.45, 0.55]]  # first flips 1 -> 0 (shift -0.5 of P(pos)); second flips 0 -> 1 (+0.15)
    s = cf.summarise(original, variant, probes, ["neg", "pos"], reference=1)
    g = s["categories"]["gender"]
    assert s["flip_rate"] == 1.0 and g["variants"] == 2 and g["mean_abs_shift"] == pytest.approx(0.325)
    assert g["groups"]["female"]["mean_shift"] == pytest.approx(-0.5) and g["groups"]["male"][
        "mean_shift"
    ] == pytest.approx(0.15)
    assert g["flip_examples"][0] == {"index": 0, "variant": "x", "from": "pos", "to": "neg"}


def test_user_terms_validated(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("caste:\n  a: [x, y]\n  b: [z]\n")
    with pytest.raises(
        DataError, match=r"t.yaml: the groups of 'caste' must list aligned terms of equal length \(a has 2, b has 1\)"
    ):
        terms.load(bad)
    good = tmp_path / "g.json"
    good.write_text('{"age": {"young": ["young", "teenager"], "old": ["old", "pensioner"]}}')
    lists = terms.select(terms.load(good), ["age", "gender"])
    assert list(lists) == ["age", "gender"]
    with pytest.raises(DataError, match="unknown term category 'agee'"):
        terms.select(None, ["agee"])


def _eec_rows():
    rows = []
    for tpl in ("<p> feels <e>.", "<p> made me feel <e>."):
        for word, emo in (("angry", "anger"), ("happy", "joy")):
            for person, gender, race in (
                ("Adam", "male", "European"),
                ("Amanda", "female", "European"),
                ("Jamel", "male", "African-American"),
                ("Ebony", "female", "African-American"),
                ("he", "male", ""),
                ("she", "female", ""),
            ):
                rows.append(
                    {
                        "Sentence": f"{person} {word}",
                        "Template": tpl,
                        "Person": person,
                        "Gender": gender,
                        "Race": race,
                        "Emotion": emo,
                        "Emotion word": word,
                    }
                )
    return rows


def test_eec_gaps_by_hand():
    rows = _eec_rows()
    # female +0.1 everywhere; African-American +0.0; so the gender gap is exactly 0.1 and race gap 0
    scores = [0.5 + (0.1 if r["Gender"] == "female" else 0.0) + (0.05 if r["Emotion"] == "joy" else 0.0) for r in rows]
    res = eec.gaps(rows, scores)
    assert res["gender"]["gap"] == "female - male" and res["gender"]["overall"]["gap"] == pytest.approx(0.1)
    assert (
        res["gender"]["overall"]["pairs"] == 2 * 2 * 3
    )  # templates x words x (European, African-American, noun phrases)
    assert res["gender"]["overall"]["a_higher"] == 1.0 and res["gender"]["joy"]["pairs"] == 6
    assert res["race"]["overall"]["gap"] == pytest.approx(0.0) and res["race"]["overall"]["pairs"] == 2 * 2 * 2
    assert res["race"]["overall"]["significant"] is False


def test_eec_real_file_reads(shared_data):
    rows = eec.read(shared_data / "fairness" / "Equity-Evaluation-Corpus.csv")
    assert len(rows) == 8640
    res = eec.gaps(rows, [0.5] * len(rows))
    assert res["gender"]["overall"]["gap"] == 0 and res["race"]["overall"]["pairs"] > 100


def test_eec_bad_file(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("Sentence,Person\nhi,me\n")
    with pytest.raises(DataError, match="x.csv: not an EEC file; missing column"):
        eec.read(p)


def test_group_metrics_by_hand():
    y_true = [1, 1, 0, 0, 1, 0, 0, 0]
    y_pred = [1, 1, 0, 1, 0, 0, 0, 0]
    grp = ["a", "a", "a", "a", "b", "b", "b", "b"]
    m = groups.metrics(y_true, y_pred, grp, ["neg", "pos"], positive=1)
    # selection rate of pos: a 3/4, b 0/4; TPR a 2/2, b 0/1; FPR a 1/2, b 0/3
    assert m["demographic_parity_difference"] == pytest.approx(0.75)
    assert m["equalized_odds_difference"] == pytest.approx(1.0)
    assert (
        m["groups"]["a"]["accuracy"] == 0.75 and m["groups"]["b"]["accuracy"] == 0.75 and m["accuracy_difference"] == 0
    )


def test_crows_shared_score_counts_only_shared_tokens():
    a = ([1, 2, 3, 4], [-1.0, -2.0, -3.0, -4.0])
    b = ([1, 9, 3, 4], [-1.0, -9.0, -0.5, -0.5])
    assert crows_pairs.shared_score(a, b) == (-8.0, -2.0)  # tokens 1, 3, 4 shared


def test_crows_pairs_on_a_tiny_lm(tiny_llama_dir, shared_data):
    from tunelab.models import load

    src = load.resolve(str(tiny_llama_dir))
    model, _ = load.load_model(src, "AutoModelForCausalLM")
    tok = load.load_tokenizer(src)
    rows = crows_pairs.read(shared_data / "fairness" / "crows_pairs_anonymized.csv")
    assert len(rows) == 1508
    res = crows_pairs.evaluate(model.eval(), tok, rows[:24], batch_size=8)
    assert res["pairs"] == 24 and sum(v["pairs"] for v in res["bias_types"].values()) == 24
    assert 0 <= res["overall"]["stereotype_rate"] <= 1 and 0 < res["overall"]["p_value"] <= 1
    # the batched score equals one sentence scored alone
    alone = crows_pairs.token_logprobs(model, tok, [rows[3]["sent_more"]])[0]
    batched = crows_pairs.token_logprobs(model, tok, [r["sent_more"] for r in rows[:8]])[3]
    assert alone[0] == batched[0] and alone[1] == pytest.approx(batched[1], abs=1e-4)


def test_crows_pairs_command_on_a_plain_model(tiny_llama_dir, shared_data, tmp_path, capsys):
    from tunelab import cli

    args = [
        "fairness",
        str(tiny_llama_dir),
        "--crows-pairs",
        str(shared_data / "fairness" / "crows_pairs_anonymized.csv"),
        "--max-rows",
        "6",
    ]
    assert cli.main(args) == 2 and "pass --out DIR" in capsys.readouterr().err
    assert cli.main(args + ["--out", str(tmp_path / "f")]) == 0
    head = __import__("json").loads(capsys.readouterr().out)
    assert 0 <= head["crows_pairs"]["all"] <= 1
