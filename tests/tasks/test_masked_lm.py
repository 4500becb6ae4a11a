"""masked_lm: masking proportions (tokens, whole words, 80/10/10), a tiny MLM run, and the two-step recipe
(step 2's model.name is step 1's run folder)."""

from __future__ import annotations

import json
import random

import pytest

from tunelab import cli, runs
from tunelab.errors import ModelError
from tunelab.tasks import masked_lm as mlm


def test_token_masking_proportion_and_specials():
    rng = random.Random(0)
    words = [-1] + list(range(20_000)) + [-1]
    chosen = mlm.choose(words, 0.15, False, rng)
    assert not chosen[0] and not chosen[-1]  # special tokens never
    assert sum(chosen) / 20_000 == pytest.approx(0.15, abs=0.01)


def test_whole_word_masking_groups_sub_tokens():
    rng = random.Random(1)
    words = [-1] + [w for w in range(5000) for _ in range(3)] + [-1]  # every word is 3 sub-tokens
    chosen = mlm.choose(words, 0.15, True, rng)
    by_word: dict[int, set] = {}
    for w, c in zip(words, chosen):
        if w != -1:
            by_word.setdefault(w, set()).add(c)
    assert all(len(s) == 1 for s in by_word.values())  # a word is masked whole or not at all
    assert sum(s == {True} for s in by_word.values()) / 5000 == pytest.approx(0.15, abs=0.015)


def test_short_text_gets_one_masked_token_and_80_10_10():
    assert sum(mlm.choose([-1, 0, -1], 0.0001, False, random.Random(0))) == 1
    rng = random.Random(2)
    ids = list(range(100, 20_100))
    inputs, labels = mlm.mask_tokens(ids, [True] * len(ids), mask_id=4, vocab_size=50_000, rng=rng)
    assert labels == ids
    masked = sum(i == 4 for i in inputs) / len(ids)
    kept = sum(i == o for i, o in zip(inputs, ids)) / len(ids)
    assert masked == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1, abs=0.01)  # (a random replacement equal to the original is rare)
    inputs, labels = mlm.mask_tokens([7, 8], [False, True], 4, 100, random.Random(0))
    assert labels == [-100, 8] and inputs[0] == 7


def test_wordpiece_words_from_a_slow_tokenizer(tiny_mlm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_mlm_dir))
    (feat,) = mlm.encode(tok, ["good zq movie"], 32)
    tokens = tok.convert_ids_to_tokens(feat["input_ids"])
    assert tokens[0] == "[CLS]" and feat["word_ids"][0] == -1 and feat["word_ids"][-1] == -1
    # 'zq' splits into 'z', '##q' (one word); 'good' and 'movie' are words of their own
    assert feat["word_ids"][1:-1] == [0, 1, 1, 2], tokens


def test_mlm_run_then_classifier_from_its_run_folder(tmp_path, tiny_mlm_dir, sentiment_tsv):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(["good fun movie", "bad dull film", "great love film", "awful hate movie"] * 8) + "\n")
    step1 = tmp_path / "dapt"
    common = ["train.max_steps=2", "train.batch_size=8", "train.threads=1", "speed.cache=false", "model.max_length=16"]
    args = ["train", "--quiet", "task=masked_lm", f"model.name={tiny_mlm_dir}", f"data.train={text}", *common]
    assert cli.main([*args, "task.whole_word=true", f"output_dir={step1}"]) == 0
    dev = json.loads((step1 / "metrics.json").read_text())["dev"]
    assert dev["perplexity"] > 1 and 0 <= dev["accuracy"] <= 1
    loaded = runs.load_run(step1)
    (pred,) = loaded.task.predict(loaded, loaded.task.parse_inputs(["good [MASK] movie"], "x"))
    assert len(pred["fills"]) == 1 and len(pred["fills"][0]) == 5
    step2 = tmp_path / "cls"
    args = ["train", "--quiet", f"model.name={step1}", f"data.train={sentiment_tsv}", "data.text_column=sentence"]
    assert cli.main([*args, *common, f"output_dir={step2}"]) == 0
    assert runs.read_config(step2).model.name == str(step1)
    # step 2's base model is step 1's trained encoder (not the original model)
    import torch
    from safetensors.torch import load_file

    dapt = load_file(str(step1 / "model" / "model.safetensors"))
    key = next(k for k in dapt if k.endswith("word_embeddings.weight"))
    _, base2, _ = runs.build_base(runs.read_config(step2), runs.read_labels(step2))
    assert torch.equal(base2.state_dict()[key], dapt[key])
    assert not torch.equal(load_file(str(tiny_mlm_dir / "model.safetensors"))[key], dapt[key])
    # a run folder holding only an adapter is refused with the fix
    lora = tmp_path / "dapt-lora"
    args = ["train", "--quiet", "task=masked_lm", f"model.name={tiny_mlm_dir}", f"data.train={text}", *common]
    assert cli.main([*args, "method=lora", f"output_dir={lora}"]) == 0
    from tunelab.models import load as model_load

    with pytest.raises(ModelError, match="tunelab merge"):
        model_load.resolve(str(lora))
