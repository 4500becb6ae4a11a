from collections import Counter

from tunelab.data.split import stratified_split


def test_stratified_split_keeps_class_ratios_and_is_seeded():
    labels = ["a"] * 90 + ["b"] * 10
    train, dev = stratified_split(labels, 0.2, seed=3)
    assert sorted(train + dev) == list(range(100)) and not set(train) & set(dev)
    assert Counter(labels[i] for i in dev) == {"a": 18, "b": 2}
    assert (train, dev) == stratified_split(labels, 0.2, seed=3)
    assert dev != stratified_split(labels, 0.2, seed=4)[1]


def test_rare_class_keeps_a_training_example():
    train, dev = stratified_split(["a"] * 10 + ["b"] * 2 + ["c"], 0.1, seed=0)
    labels = ["a"] * 10 + ["b"] * 2 + ["c"]
    assert Counter(labels[i] for i in train)["b"] == 1 and 12 in train
