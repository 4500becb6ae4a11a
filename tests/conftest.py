"""Shared fixtures: offline hub, pinned threads, tiny models built from configs, the shared data folder."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("TUNELAB_TEST_THREADS", "1")))
os.environ["TUNELAB_THREADS"] = str(torch.get_num_threads())  # inference commands run in-process keep the pinned count
# A suite started in the background of a non-interactive shell (`cmd &`, as some runners do) inherits SIGINT ignored,
# and so would every tunelab process the Ctrl-C tests start: Python keeps an inherited SIG_IGN. A Python handler
# resets to the default on exec, so the children get Ctrl-C as a user's terminal delivers it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

WORDS = (
    "good great fine bad awful boring movie film plot actor story fun dull love hate the a is was "
    "not very and but it this that of to in on with"
).split()


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory) -> Path:
    """A cache folder for the session, set before any other fixture runs (session fixtures such as tiny_llama_dir
    load models too): nothing is written to the user's ~/.cache/tunelab. Converted GGUF models live in its
    models/ folder, shared by every test (converting is slow and gives the same files); removed at the end."""
    folder = tmp_path_factory.mktemp("tunelab-session-cache")
    (folder / "models").mkdir()
    old = os.environ.get("TUNELAB_CACHE")
    os.environ["TUNELAB_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("TUNELAB_CACHE", None)
    else:
        os.environ["TUNELAB_CACHE"] = old
    shutil.rmtree(folder / "models", ignore_errors=True)  # ~0.5 GB per converted model


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch, _session_cache):
    """Each test gets its own encoded-data cache (never the user's ~/.cache/tunelab); converted models are shared."""
    folder = tmp_path_factory.mktemp("tunelab-cache")
    (folder / "models").symlink_to(_session_cache / "models", target_is_directory=True)
    monkeypatch.setenv("TUNELAB_CACHE", str(folder))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def _word_tokenizer(folder: Path):
    from transformers import BertTokenizer

    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + WORDS
        + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
        + list("abcdefghijklmnopqrstuvwxyz.,!?'")
    )
    # transformers 5 ignores vocab_file= (every word became [UNK]); pass the vocabulary itself
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 BERT (random weights) with a word-level tokenizer, saved as a HF directory."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = _word_tokenizer(folder)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )  # as BERT: the default model.max_length fits
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """tiny_bert_dir's shape as a BertForMaskedLM (random weights, same word-level tokenizer): PET cloze scoring."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    folder = tmp_path_factory.mktemp("tiny-mlm")
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig.from_pretrained(str(tiny_bert_dir))).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_bert_dir)).save_pretrained(str(folder))
    return folder


def write_sentiment(path: Path, n: int = 64, seed: int = 0) -> Path:
    """A learnable toy sentiment TSV: positive rows use positive words."""
    import random

    rng = random.Random(seed)
    pos, neg = ["good", "great", "fun", "love"], ["bad", "awful", "dull", "hate"]
    lines = ["sentence\tlabel"]
    for i in range(n):
        label = i % 2
        words = rng.sample(pos if label else neg, 2) + rng.sample(
            ["the", "movie", "film", "plot", "was", "very"], rng.randint(1, 5)
        )
        rng.shuffle(words)
        lines.append(" ".join(words) + f"\t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_topics(path: Path, n: int = 48, seed: int = 0) -> Path:
    """A learnable toy multi-label TSV: the label set is which of 'film' (cinema), 'plot' (story) and 'actor'
    (people) the text holds, as a comma-separated cell (some rows have no label: an empty JSON list)."""
    import random

    rng = random.Random(seed)
    cues = {"cinema": "film", "story": "plot", "people": "actor"}
    lines = ["sentence\tlabel"]
    for _ in range(n):
        chosen = [name for name in cues if rng.random() < 0.45]
        words = [cues[c] for c in chosen] + rng.sample(["the", "a", "was", "very", "good", "it"], rng.randint(1, 4))
        rng.shuffle(words)
        lines.append(" ".join(words) + "\t" + (",".join(chosen) or "[]"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_scores(path: Path, n: int = 48, seed: int = 0) -> Path:
    """A learnable toy regression TSV: the target counts the positive words minus the negative ones."""
    import random

    rng = random.Random(seed)
    lines = ["sentence\tscore"]
    for _ in range(n):
        words = rng.choices(["good", "great", "bad", "awful", "the", "movie", "plot"], k=rng.randint(2, 6))
        score = sum(w in ("good", "great") for w in words) - sum(w in ("bad", "awful") for w in words)
        lines.append(" ".join(words) + f"\t{score * 0.5 + 3:.1f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sentiment_tsv(tmp_path) -> Path:
    return write_sentiment(tmp_path / "train.tsv")


def save_tiny_llama(folder: Path, max_positions: int = 256) -> Path:
    """Save a 2-layer, hidden-32 Llama (random weights, seed 0) with SmolLM2's tokenizer (it has a chat template)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunelab.models import load as model_load

    tok = model_load.load_tokenizer(model_load.resolve("smollm2-135m"))
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny Llama with 256 positions, as a HF directory (see save_tiny_llama)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def write_alpaca(path: Path, n: int = 32, seed: int = 0) -> Path:
    """A learnable toy Alpaca JSON file: the answer repeats the instruction's last word."""
    import json
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word = rng.choice(WORDS)
        rows.append({"instruction": f"Say the word {word}", "input": "", "output": f"{word} {word}"})
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def alpaca_writer():
    """write_alpaca(path, n, seed): a toy Alpaca JSON file (a fixture so test modules need not import conftest)."""
    return write_alpaca


# ---------------------------------------------------------------- trained tiny runs (compression and export tests)


def train_tiny(root: Path, model: Path, *overrides: str, rows: int = 64, name: str = "run") -> Path:
    """Train a tiny sentiment classifier on ``rows`` toy rows written to root/train.tsv (2 steps of 8 unless
    ``overrides`` say otherwise: later ``a.b=value`` items win) and return its run folder root/NAME."""
    from tunelab import cli

    data = write_sentiment(root / "train.tsv", n=rows)
    out = root / name
    args = [f"model.name={model}", f"data.train={data}", "data.text_column=sentence", "train.max_steps=2"]
    code = cli.main(["train", "--quiet", *args, "train.batch_size=8", *overrides, f"output_dir={out}"])
    assert code == 0, f"training the tiny run in {out} exited {code}"
    return out


def loop_args(folder: Path, model: Path, *extra: str) -> list[str]:
    """Deterministic training overrides on folder/train.tsv (96 toy rows, written once): fp32, one thread, no
    dropout, a log line per step; for tests that compare runs step by step (resume, interrupts, processes)."""
    data = folder / "train.tsv"
    if not data.is_file():
        write_sentiment(data, n=96)
    return [
        f"model.name={model}",
        f"data.train={data}",
        "data.text_column=sentence",
        "train.batch_size=8",
        "train.lr=1e-3",
        "train.precision=fp32",
        "train.threads=1",
        "train.log_every=1",
        "model.dropout=0",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_cls_run(tmp_path_factory, tiny_bert_dir) -> Path:
    """A tiny-BERT sentiment classifier trained briefly with LoRA (so quantize/prune/export must merge it first)."""
    root = tmp_path_factory.mktemp("cls-run")
    overrides = ("method=lora", "train.max_steps=12", "train.batch_size=16", "train.lr=1e-2", "speed.cache=false")
    return train_tiny(root, tiny_bert_dir, *overrides, rows=96)


@pytest.fixture(scope="session")
def tiny_lm_run(tmp_path_factory, tiny_llama_dir) -> Path:
    """A tiny-Llama instruction run trained briefly with LoRA (SmolLM2's tokenizer and chat template)."""
    from tunelab import cli

    root = tmp_path_factory.mktemp("lm-run")
    data = write_alpaca(root / "alpaca.json", n=24)
    out = root / "run"
    assert (
        cli.main(
            [
                "train",
                "--quiet",
                f"model.name={tiny_llama_dir}",
                f"data.train={data}",
                "task=causal_lm",
                "method=lora",
                "train.max_steps=3",
                "train.batch_size=8",
                "task.eval_generations=0",
                "model.max_length=64",
                "speed.cache=false",
                f"output_dir={out}",
            ]
        )
        == 0
    )
    return out
