"""Shared fixtures: offline hub, pinned threads, tiny models built from configs, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("TUNELAB_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

WORDS = ("good great fine bad awful boring movie film plot actor story fun dull love hate the a is was "
         "not very and but it this that of to in on with").split()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def _word_tokenizer(folder: Path):
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz.,!?'")
    # transformers 5 ignores vocab_file= (every word became [UNK]); pass the vocabulary itself
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 BERT (random weights) with a word-level tokenizer, saved as a HF directory."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = _word_tokenizer(folder)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def write_sentiment(path: Path, n: int = 64, seed: int = 0) -> Path:
    """A learnable toy sentiment TSV: positive rows use positive words."""
    import random

    rng = random.Random(seed)
    pos, neg = ["good", "great", "fun", "love"], ["bad", "awful", "dull", "hate"]
    lines = ["sentence\tlabel"]
    for i in range(n):
        label = i % 2
        words = rng.sample(pos if label else neg, 2) + rng.sample(["the", "movie", "film", "plot", "was", "very"], rng.randint(1, 5))
        rng.shuffle(words)
        lines.append(" ".join(words) + f"\t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sentiment_tsv(tmp_path) -> Path:
    return write_sentiment(tmp_path / "train.tsv")
