import pytest

from tunelab.data import tagging


def test_iob2_and_bio_pass_through():
    tags = ["B-PER", "I-PER", "O", "B-LOC"]
    assert tagging.to_iob2(tags, "iob2") == tags
    assert tagging.to_iob2(tags, "bio") == tags


def test_iob1_to_iob2():
    # IOB1: I- opens an entity; B- only separates two adjacent entities of the same type
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-LOC"]
    assert tagging.to_iob2(iob1, "iob1") == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG", "B-LOC"]


def test_bioes_to_iob2():
    bioes = ["S-PER", "O", "B-ORG", "I-ORG", "E-ORG", "B-LOC", "E-LOC", "S-LOC"]
    assert tagging.to_iob2(bioes, "bioes") == ["B-PER", "O", "B-ORG", "I-ORG", "I-ORG", "B-LOC", "I-LOC", "B-LOC"]
    assert tagging.to_iob2(bioes, "iobes") == tagging.to_iob2(bioes, "bioes")


def test_wrong_prefix_for_scheme_is_named():
    with pytest.raises(ValueError, match="tag 'S-PER' has prefix 'S', which scheme iob2 does not use"):
        tagging.to_iob2(["O", "S-PER"], "iob2")
    with pytest.raises(ValueError, match="tag 'PER' is not 'O' or PREFIX-TYPE"):
        tagging.to_iob2(["PER"], "iob2")
    with pytest.raises(ValueError, match="unknown tag scheme 'bilou'"):
        tagging.to_iob2(["O"], "bilou")


def test_find_invalid_and_repair():
    tags = ["I-PER", "O", "B-LOC", "I-ORG", "I-ORG", "B-PER", "I-PER"]
    bad = tagging.find_invalid(tags)
    assert [i for i, _ in bad] == [0, 3]
    assert "'I-PER' starts the sentence" in bad[0][1]
    assert "'I-ORG' follows 'B-LOC'" in bad[1][1]
    assert tagging.repair(tags) == ["B-PER", "O", "B-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert tagging.find_invalid(tagging.repair(tags)) == []


def test_spans_round_trip():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    spans = tagging.spans(tags)
    assert spans == [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC"), (7, 8, "ORG")]
    assert tagging.from_spans(len(tags), spans) == tags


def test_overlapping_spans_are_an_error():
    with pytest.raises(ValueError, match="overlaps another entity"):
        tagging.from_spans(5, [(0, 2, "PER"), (1, 3, "LOC")])


def test_label_names():
    assert tagging.entity_types(["O", "B-PER", "I-PER", "B-LOC"]) == ["LOC", "PER"]
    assert tagging.label_names(["LOC", "PER"]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
