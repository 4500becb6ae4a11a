"""Encoded-data cache: a hit skips the encoder; changed rows, tokenizer or options miss."""

from __future__ import annotations

from tunelab.data import cache
from tunelab.data.sources import Row
from tunelab.models import load as model_load


def test_hit_and_invalidation(tmp_path, monkeypatch, tiny_bert_dir):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path / "cache"))
    tok = model_load.load_tokenizer(model_load.resolve(str(tiny_bert_dir)))
    rows = [Row("good movie", None, "1", 2), Row("bad plot", None, "0", 3)]
    calls = []

    def build():
        calls.append(1)
        return [{"input_ids": tok(r.text)["input_ids"]} for r in rows]

    key = cache.key(rows, tok, max_length=64)
    first = cache.cached(key, build)
    second = cache.cached(key, build)
    assert first == second and len(calls) == 1  # second run read the cache
    assert len(list((tmp_path / "cache").glob("*.pkl"))) == 1
    changed_rows = [Row("good movie!", None, "1", 2), rows[1]]
    assert cache.key(changed_rows, tok, max_length=64) != key
    assert cache.key(rows, tok, max_length=32) != key
    tok2 = model_load.load_tokenizer(model_load.resolve(str(tiny_bert_dir)))
    assert cache.key(rows, tok2, max_length=64) == key  # same tokenizer loaded again: same key
    tok2.add_tokens(["newword"])
    assert cache.key(rows, tok2, max_length=64) != key
    cache.cached(key, build, enabled=False)
    assert len(calls) == 2  # disabled: always builds


def test_damaged_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))
    (tmp_path / "abc.pkl").write_bytes(b"not a pickle")
    assert cache.cached("abc", lambda: [1, 2]) == [1, 2]
    assert cache.cached("abc", lambda: [3]) == [1, 2]
