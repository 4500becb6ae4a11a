"""seq2seq: reading pairs (columns, JSONL lists, parallel files), decoder-only loss masking token by token, metrics
against hand-computed values, and tiny random T5 / BART / BERT2BERT models trained 2 steps, saved, loaded and
generated from."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tunelab import cli, config, runs
from tunelab.errors import DataError
from tunelab.evaluation import text_metrics
from tunelab.tasks import TASKS
from tunelab.tasks import seq2seq as s2s
from tunelab.tasks.seq2seq_data import read_pairs, target_file

WORDS = ["good", "bad", "movie", "film", "great", "fun", "dull", "love", "hate", "awful"]


def _cfg(*overrides: str):
    return config.load(None, ["task=seq2seq", *overrides])


# ---------------------------------------------------------------- metrics (hand-computed)


def test_bleu_and_chrf_perfect_and_multi_reference():
    pred = ["the cat sat on the mat"]
    assert text_metrics.bleu(pred, [["the cat sat on the mat"]]) == pytest.approx(100.0)
    assert text_metrics.chrf(pred, [["the cat sat on the mat"]]) == pytest.approx(100.0)
    # a second reference that matches exactly lifts BLEU from the first reference's score to 100
    one = text_metrics.bleu(pred, [["a dog lay on a rug"]])
    assert one < 10
    assert text_metrics.bleu(pred, [["a dog lay on a rug", "the cat sat on the mat"]]) == pytest.approx(100.0)
    # sentences with different numbers of references in one corpus
    two = text_metrics.bleu(pred * 2, [["the cat sat on the mat"], ["x y z", "the cat sat on the mat"]])
    assert two == pytest.approx(100.0)


def test_bleu_hand_computed():
    # a hypothesis that is the first half of its reference: every n-gram precision is 1, so
    # BLEU = 100 * brevity penalty = 100 * exp(1 - ref_len / hyp_len) = 100 * exp(1 - 8 / 4)
    import math

    assert text_metrics.bleu(["a b c d"], [["a b c d e f g h"]]) == pytest.approx(100 * math.exp(-1), rel=1e-6)


def test_rouge_hand_computed_best_reference():
    # "the cat" vs "the cat sat on": ROUGE-1 P = 2/2, R = 2/4 -> F1 = 2/3; ROUGE-2 P = 1/1, R = 1/3 -> F1 = 1/2
    r = text_metrics.rouge(["the cat"], [["the cat sat on"]], stemmer=False)
    assert r["rouge1"] == pytest.approx(2 / 3)
    assert r["rouge2"] == pytest.approx(1 / 2)
    assert r["rougeL"] == pytest.approx(2 / 3)
    # the best of two references counts; the mean is over predictions
    r = text_metrics.rouge(["the cat", "dog"], [["zzz", "the cat"], ["cat"]], stemmer=False)
    assert r["rouge1"] == pytest.approx((1.0 + 0.0) / 2)


def test_metrics_refuse_missing_references():
    with pytest.raises(ValueError, match="prediction 0: no reference"):
        text_metrics.bleu(["a"], [[]])
    with pytest.raises(ValueError, match="1 predictions but 2"):
        text_metrics.rouge(["a"], [["a"], ["b"]])


# ---------------------------------------------------------------- reading


def test_reads_jsonl_lists_csv_and_parallel_files(tmp_path):
    jl = tmp_path / "d.jsonl"
    jl.write_text(
        json.dumps({"source": ["First sentence.", "Second one."], "target": ["tl one", "tl two"]})
        + "\n\n"
        + json.dumps({"source": "plain", "target": "t"})
        + "\n",
        encoding="utf-8",
    )
    cfg = _cfg()
    rows = read_pairs(str(jl), cfg.data, cfg.task).rows
    assert [(r.source, r.references, r.line) for r in rows] == [
        ("First sentence. Second one.", ("tl one", "tl two"), 1),
        ("plain", ("t",), 3),
    ]
    assert [r.source for r in s2s.training_pairs(rows, "each")] == ["First sentence. Second one."] * 2 + ["plain"]
    assert len(s2s.training_pairs(rows, "first")) == 2
    csv = tmp_path / "d.csv"
    csv.write_text("src,tgt\nhello,hallo\n", encoding="utf-8")
    cfg = _cfg("task.source_column=src", "task.target_column=tgt")
    assert [(r.source, r.references) for r in read_pairs(str(csv), cfg.data, cfg.task).rows] == [("hello", ("hallo",))]
    for lang, lines in (("en", "a man\nthe dog\n"), ("de", "ein Mann\nder Hund\n")):
        with gzip.open(tmp_path / f"train.{lang}.gz", "wt", encoding="utf-8") as f:
            f.write(lines)
    cfg = _cfg("task.languages=[en,de]")
    rows = read_pairs(str(tmp_path / "train.en.gz"), cfg.data, cfg.task).rows
    assert [(r.source, r.references[0]) for r in rows] == [("a man", "ein Mann"), ("the dog", "der Hund")]
    # prediction input (`tunelab predict --data`): the source side alone, compressed or not
    inputs = TASKS["seq2seq"].read(cfg, str(tmp_path / "train.en.gz"), with_labels=False).rows
    assert [(i.source, i.line) for i in inputs] == [("a man", 1), ("the dog", 2)]


def test_bad_inputs_name_file_line_and_key(tmp_path):
    jl = tmp_path / "d.jsonl"
    jl.write_text(json.dumps({"source": "a", "target": "b"}) + "\n" + json.dumps({"source": "a"}) + "\n")
    cfg = _cfg()
    with pytest.raises(DataError, match=r"d\.jsonl:2: expected key 'target'"):
        read_pairs(str(jl), cfg.data, cfg.task)
    jl.write_text(json.dumps({"source": "a", "target": []}) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:1: 'target': expected at least one non-empty text, found \[\]"):
        read_pairs(str(jl), cfg.data, cfg.task)
    jl.write_text(json.dumps({"source": "  ", "target": "b"}) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:1: 'source': expected non-empty text"):
        read_pairs(str(jl), cfg.data, cfg.task)
    jl.write_text(json.dumps({"source": ["a", 3], "target": "b"}) + "\n")
    with pytest.raises(DataError, match=r"d\.jsonl:1: 'source': expected non-empty text or a list of texts, found 3"):
        read_pairs(str(jl), cfg.data, cfg.task)
    # a blank sentence inside a sentence-split source (SciTLDR train line 1538) is dropped, not an error
    jl.write_text(json.dumps({"source": ["First.", "  ", "Second."], "target": ["b"]}) + "\n")
    assert read_pairs(str(jl), cfg.data, cfg.task).rows[0].source == "First. Second."
    (tmp_path / "x.en").write_text("a\nb\nc\n")
    (tmp_path / "x.de").write_text("a\nb\n")
    cfg = _cfg("task.languages=[en,de]")
    with pytest.raises(DataError, match=r"x\.en has 3 lines but .*x\.de has 2"):
        read_pairs(str(tmp_path / "x.en"), cfg.data, cfg.task)
    (tmp_path / "x.de").write_text("a\n\nc\n")
    with pytest.raises(DataError, match=r"x\.de:2: empty line"):
        read_pairs(str(tmp_path / "x.en"), cfg.data, cfg.task)
    with pytest.raises(DataError, match="must hold '.en'"):
        target_file(str(tmp_path / "train.txt"), ["en", "de"])
    with pytest.raises(config.ConfigError, match="task.prompt"):
        _cfg("task.prompt=no placeholder")


# ---------------------------------------------------------------- decoder-only: loss on the target only


def test_decoder_only_labels_cover_exactly_the_target(tiny_llama_dir):
    from tunelab.models import load as model_load
    from tunelab.tasks.seq2seq_data import make_pair

    cfg = _cfg(f"model.name={tiny_llama_dir}", "task.prompt=Translate: {source}")
    tok = model_load.load_tokenizer(model_load.resolve(str(tiny_llama_dir)))
    template = s2s.templates.chat_template(tok, "chatml")
    pair = make_pair("a red house", ["ein rotes Haus"], 1)
    (feat,), _ = s2s._features(cfg, tok, template, [pair], "test", lambda _m: None)
    ids, labels = feat["input_ids"], feat["labels"]
    assert len(ids) == len(labels)
    kept = [i for i, lab in enumerate(labels) if lab != -100]
    # every labelled token is the token itself, and they form one contiguous span at the end: the reply
    assert all(labels[i] == ids[i] for i in kept)
    assert kept == list(range(kept[0], kept[-1] + 1))
    assert tok.decode([ids[i] for i in kept]).startswith("ein rotes Haus")
    assert tok.decode([ids[i] for i in kept]).strip() == "ein rotes Haus" + tok.eos_token
    # everything before it (system/user turns, the prompt with the source, the assistant header) is masked
    prompt_text = tok.decode(ids[: kept[0]])
    assert "Translate: a red house" in prompt_text and "ein" not in prompt_text
    assert all(lab == -100 for lab in labels[: kept[0]])
    assert kept[-1] == len(ids) - 1 or all(lab == -100 for lab in labels[kept[-1] + 1 :])


# ---------------------------------------------------------------- tiny encoder-decoders: train, save, load, generate


def _write_pairs(path: Path, n: int = 32) -> Path:
    import random

    rng = random.Random(0)
    rows = []
    for _ in range(n):
        w = rng.sample(WORDS, 2)
        rows.append({"source": " ".join(w), "target": [" ".join(reversed(w)), w[0]]})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _save_tiny(kind: str, folder: Path, tok_dir: Path) -> Path:
    import torch
    from transformers import (
        AutoTokenizer,
        BartConfig,
        BartForConditionalGeneration,
        T5Config,
        T5ForConditionalGeneration,
    )

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    special = dict(pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id)
    torch.manual_seed(0)
    if kind == "t5":
        cfg = T5Config(
            vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2,
            decoder_start_token_id=tok.pad_token_id, **special,
        )  # fmt: skip
        model = T5ForConditionalGeneration(cfg)
    else:
        cfg = BartConfig(
            vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
            bos_token_id=tok.cls_token_id, decoder_start_token_id=tok.sep_token_id, forced_eos_token_id=None, **special,
        )  # fmt: skip
        model = BartForConditionalGeneration(cfg)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize(
    "kind,method", [("t5", "full"), ("bart", "lora"), ("bert2bert", "full")], ids=["t5", "bart-lora", "bert2bert"]
)
def test_tiny_encoder_decoder_trains_saves_loads_generates(tmp_path, tiny_bert_dir, kind, method, capsys):
    model_dir = tiny_bert_dir if kind == "bert2bert" else _save_tiny(kind, tmp_path / kind, tiny_bert_dir)
    data = _write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "run"
    args = [
        "train", "--quiet", "task=seq2seq", f"model.name={model_dir}", f"data.train={data}", f"data.dev={data}",
        "model.max_length=32", "task.max_target_length=8", "task.eval_generations=4", "task.eval_max_new_tokens=5",
        "train.max_steps=2", "train.batch_size=8", "train.lr=1e-3", "train.threads=1", "speed.cache=false",
        f"method={method}", f"output_dir={out}",
    ]  # fmt: skip
    assert cli.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    dev = metrics["dev"]
    for key in ("loss", "bleu", "chrf", "rouge1", "rouge2", "rougeL"):
        assert isinstance(dev[key], float), key
    assert len(dev["predictions"]) == 4 and dev["predictions"][0]["references"]
    assert "baseline" in metrics
    arch = {"t5": "encoder_decoder", "bart": "encoder_decoder", "bert2bert": "warm_start"}[kind]
    assert s2s.architecture(runs.read_config(out)) == arch
    loaded = runs.load_run(out)
    assert loaded.model.config.is_encoder_decoder
    # the reloaded model scores dev exactly as the trained one did
    again = TASKS["seq2seq"].evaluate(
        loaded, s2s.read_pairs(str(data), loaded.cfg.data, loaded.cfg.task).rows, "d", print
    )
    assert again["loss"] == pytest.approx(dev["loss"], rel=1e-4)
    preds = TASKS["seq2seq"].predict(
        loaded, TASKS["seq2seq"].parse_inputs(["good movie", '{"source": "bad film"}'], "x")
    )
    assert [p["text"] for p in preds] == ["good movie", "bad film"]
    assert all(isinstance(p["output"], str) and p["finish_reason"] in ("eos", "length") for p in preds)
    capsys.readouterr()
    assert cli.main(["generate", str(out), "--prompt", "good movie", "--max-new-tokens", "3", "--num-beams", "2"]) == 0
    assert capsys.readouterr().out.endswith("\n")


def test_decoder_only_trains_and_predicts(tmp_path, tiny_llama_dir):
    data = _write_pairs(tmp_path / "pairs.jsonl", 16)
    out = tmp_path / "run"
    args = [
        "train", "--quiet", "task=seq2seq", f"model.name={tiny_llama_dir}", f"data.train={data}", f"data.dev={data}",
        "model.max_length=64", "task.eval_generations=2", "task.eval_max_new_tokens=3", "task.baseline=false",
        "task.prompt=Reverse: {source}", "train.max_steps=2", "train.batch_size=8", "train.threads=1",
        "method=lora", "speed.cache=false", f"output_dir={out}",
    ]  # fmt: skip
    assert cli.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "baseline" not in metrics and isinstance(metrics["dev"]["bleu"], float)
    loaded = runs.load_run(out)
    assert s2s.architecture(loaded.cfg) == "decoder_only"
    (pred,) = TASKS["seq2seq"].predict(loaded, TASKS["seq2seq"].parse_inputs(["good movie"], "x"))
    assert pred["text"] == "good movie" and isinstance(pred["output"], str)


def test_generate_sends_raw_text_through_the_runs_prompt(tmp_path, tiny_llama_dir, monkeypatch, capsys):
    """`tunelab generate RUN --prompt TEXT` on a decoder-only seq2seq run wraps TEXT as the run learnt its sources
    (task.prompt, in a user turn: Task.generation_input), so it answers as predict does; chats go as given."""
    from tunelab.generation import decode

    data = _write_pairs(tmp_path / "pairs.jsonl", 8)
    out = tmp_path / "run"
    args = [
        "train", "--quiet", "task=seq2seq", f"model.name={tiny_llama_dir}", f"data.train={data}", f"data.dev={data}",
        "model.max_length=64", "task.eval_generations=0", "task.baseline=false", "task.prompt=Reverse: {source}",
        "train.max_steps=1", "train.batch_size=8", "train.threads=1", "method=lora", "speed.cache=false",
        "generation.max_new_tokens=3", f"output_dir={out}",
    ]  # fmt: skip
    assert cli.main(args) == 0
    seen, real = [], decode.generate
    monkeypatch.setattr(
        decode,
        "generate",
        lambda model, tok, prompts, *a, **k: seen.append(prompts) or real(model, tok, prompts, *a, **k),
    )
    capsys.readouterr()
    assert cli.main(["generate", str(out), "--prompt", "good movie"]) == 0
    generated = capsys.readouterr().out[:-1]  # generate prints the text and a newline
    assert seen[-1] == [[{"role": "user", "content": "Reverse: good movie"}]]
    (pred,) = TASKS["seq2seq"].predict(runs.load_run(out), TASKS["seq2seq"].parse_inputs(["good movie"], "x"))
    assert generated == pred["output"]
    # --input: {"prompt"} lines are wrapped, {"messages"} lines are sent as written, order kept
    chat = [{"role": "user", "content": "as written"}]
    lines = [{"prompt": "bad film"}, {"messages": chat}, {"prompt": "fun"}]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    assert cli.main(["generate", str(out), "--input", str(tmp_path / "in.jsonl")]) == 0
    assert seen[-1] == [
        [{"role": "user", "content": "Reverse: bad film"}],
        chat,
        [{"role": "user", "content": "Reverse: fun"}],
    ]
