"""Batch plans and dynamic padding, checked against hand-computed values."""

from tunelab.data.collate import batch_plan, micro_batches, pad_batch


def test_pad_batch_pads_to_longest_not_max_length():
    batch = pad_batch(
        [
            {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": 1},
            {"input_ids": [8], "attention_mask": [1], "labels": 0},
        ],
        pad_id=0,
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]
    tokens = pad_batch([{"input_ids": [1, 2], "labels": [3, 4]}, {"input_ids": [1], "labels": [5]}], pad_id=9)
    assert tokens["labels"].tolist() == [[3, 4], [5, -100]] and tokens["input_ids"].tolist() == [[1, 2], [1, 9]]


def test_batch_plan_is_a_seeded_partition_grouped_by_length():
    lengths = [(i * 37) % 100 + 1 for i in range(1000)]
    plan = batch_plan(lengths, 10, seed=1, epoch=0)
    assert sorted(i for b in plan for i in b) == list(range(1000))
    assert plan == batch_plan(lengths, 10, seed=1, epoch=0)
    assert plan != batch_plan(lengths, 10, seed=1, epoch=1)
    grouped = sum(max(lengths[i] for i in b) * len(b) for b in plan)
    random_plan = batch_plan(lengths, 10, seed=1, epoch=0, group_by_length=False)
    ungrouped = sum(max(lengths[i] for i in b) * len(b) for b in random_plan)
    assert grouped < 0.7 * ungrouped  # far less padding


def test_micro_batches():
    assert micro_batches(list(range(10)), 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert micro_batches([1, 2], 4) == [[1], [2]]
