"""EDA operations, entity swap and synonym sources, with seeded randomness."""

import random
from collections import Counter

import pytest

from tunelab.data import augment, lexicon, tagging


def test_eda_operations_keep_their_promises():
    rng = random.Random(0)
    words = "the movie was good and the plot was fun".split()
    movable = [True] * len(words)
    swapped = augment.swap(words, movable, 2, rng)
    assert Counter(swapped) == Counter(words) and swapped != words
    kept, tags = augment.delete(words, ["O"] * len(words), movable, 0.5, rng)
    assert 1 <= len(kept) < len(words) and len(tags) == len(kept)
    assert augment.delete(["only"], ["O"], [True], 1.0, rng)[0] == ["only"]  # never empty
    syn = {"good": ["fine"], "fun": ["amusing"]}
    assert augment.synonym_replace(words, movable, syn, 1, random.Random(1)) in (
        "the movie was fine and the plot was fun".split(),
        "the movie was good and the plot was amusing".split(),
    )
    assert augment.synonym_replace(["Good"], [True], syn, 1, rng) == ["Fine"]
    grown, gtags = augment.insert(words, ["O"] * len(words), movable, syn, 2, rng)
    assert len(grown) == len(words) + 2 and set(grown) - set(words) <= {"fine", "amusing"}
    assert augment.n_changes(9, 0.1) == 1 and augment.n_changes(30, 0.1) == 3


def test_ner_operations_keep_entities_aligned():
    rng = random.Random(0)
    tokens = ["Ann", "Lee", "visited", "Paris", "today"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "O"]
    for op in ("synonym", "swap", "delete", "insert"):
        for seed in range(5):
            new, new_tags = augment.eda(
                op, tokens, tags, {"visited": ["saw"], "today": ["now"]}, 0.5, random.Random(seed)
            )
            assert len(new) == len(new_tags) and not tagging.find_invalid(new_tags)
            assert [tuple(new[a:b]) for a, b, _ in tagging.spans(new_tags)] == [("Ann", "Lee"), ("Paris",)]
    pool = {"PER": [["Bo"], ["Ann", "Lee"]], "LOC": [["New", "York"]]}
    new, new_tags = augment.entity_swap(tokens, tags, pool, rng)
    assert new == ["Bo", "visited", "New", "York", "today"] and new_tags == ["B-PER", "O", "B-LOC", "I-LOC", "O"]


def test_clean_paraphrase_and_ops():
    assert augment.clean_paraphrase('Rewritten text: "A fine film."\nMore') == "A fine film."
    assert augment.clean_paraphrase("\n  A fine film.  \n") == "A fine film."
    assert augment.parse_ops("swap, delete") == ["swap", "delete"]
    with pytest.raises(Exception, match="unknown operation 'shuffle'"):
        augment.parse_ops("swap,shuffle")


def test_wordnet_reader(tmp_path):
    (tmp_path / "data.adj").write_text(
        "  1 This software and database is being provided\n"
        "00001740 00 a 03 good 0 full(a) 0 estimable 0 000 | having desirable qualities\n"
        "00002098 00 s 02 good 0 respectable 0 000 | deserving of esteem\n",
        encoding="utf-8",
    )
    (tmp_path / "data.noun").write_text("00003000 03 n 02 motion_picture 0 movie 0 000 | a film\n", encoding="utf-8")
    assert lexicon.parse_synset("  1 header") == []
    syn = lexicon.read_wordnet(tmp_path)
    assert syn["good"] == ["estimable", "full", "respectable"]
    assert syn["movie"] == ["motion picture"] and "full" in syn and syn["full"] == ["estimable", "good"]
    assert lexicon.wordnet_dir(str(tmp_path)) == tmp_path
    with pytest.raises(Exception, match="apt-get install wordnet-base"):
        lexicon.wordnet_dir(str(tmp_path / "nowhere"))
