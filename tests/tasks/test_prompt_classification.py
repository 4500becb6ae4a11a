"""prompt_classification: the LM head read through the template and verbalizer is the classifier."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tunelab import cli, config
from tunelab.errors import ConfigError
from tunelab.tasks import prompt_classification as pc


def _cfg(tiny_llama_dir, *more):
    return config.load(
        None,
        [
            "task=prompt_classification",
            f"model.name={tiny_llama_dir}",
            "prompt.template={text} It was {mask}.",
            "prompt.verbalizer={neg: [awful], pos: [splendiferous, fun]}",
            *more,
        ],
    )


@torch.no_grad()
def test_logits_are_label_word_log_likelihoods_by_hand(tiny_llama_dir):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tunelab.data.sources import Row

    model, tok = (
        LlamaForCausalLM.from_pretrained(str(tiny_llama_dir)).eval(),
        AutoTokenizer.from_pretrained(str(tiny_llama_dir)),
    )
    for scoring in ("sum", "mean"):
        cfg = _cfg(tiny_llama_dir, f"prompt.scoring={scoring}")
        words = pc.label_words(cfg, tok, ["neg", "pos"])
        assert max(len(w) for _, w, _ in words) > 1  # a multi-token word
        feats = pc.encode(
            [Row("a good movie", None, "pos", 1), Row("bad", None, "neg", 2)], tok, (cfg, ["neg", "pos"]), "f"
        )
        got = pc.prompt_logits(model, pc.collate_words(feats, words, tok.pad_token_id))
        for row, f in enumerate(feats):
            by_word = []
            for _, w, _ in words:
                logp = model(input_ids=torch.tensor([f["input_ids"] + list(w)])).logits[0].log_softmax(-1)
                lp = [float(logp[len(f["input_ids"]) + j - 1, t]) for j, t in enumerate(w)]
                by_word.append(sum(lp) / (len(lp) if scoring == "mean" else 1))
            expected = [by_word[0], math.log(math.exp(by_word[1]) + math.exp(by_word[2]))]
            assert got[row].tolist() == pytest.approx(expected, abs=1e-4)


def test_config_errors(tiny_llama_dir):
    with pytest.raises(ConfigError, match="prompt.verbalizer"):
        config.load(None, ["task=prompt_classification"])
    with pytest.raises(ConfigError, match="put {mask} after {text}"):
        _cfg(tiny_llama_dir, "prompt.template={mask}: {text}")


@pytest.mark.parametrize("method", ["lora", "prompt-tuning"])
def test_train_save_eval_predict_like_a_classification_run(method, tiny_llama_dir, sentiment_tsv, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--quiet",
        "task=prompt_classification",
        f"model.name={tiny_llama_dir}",
        f"data.train={sentiment_tsv}",
        "data.text_column=sentence",
        "prompt.verbalizer={0: [bad], 1: [good]}",
        f"method={method}",
        "train.max_steps=6",
        "train.batch_size=8",
        "train.lr=5e-3",
        "model.max_length=32",
        f"output_dir={out}",
    ]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--data", str(sentiment_tsv), "--text-column", "sentence"]) == 0
    assert "accuracy" in capsys.readouterr().out
    (tmp_path / "in.txt").write_text("good fun movie\nawful dull plot\n")
    assert cli.main(["predict", str(out), "--data", str(tmp_path / "in.txt")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [x["text"] for x in lines] == ["good fun movie", "awful dull plot"]
    assert all(set(x["probs"]) == {"0", "1"} and sum(x["probs"].values()) == pytest.approx(1, abs=1e-4) for x in lines)


@torch.no_grad()
def test_masked_lm_logits_by_hand_and_a_training_run(tiny_mlm_dir, sentiment_tsv, tmp_path):
    from transformers import AutoTokenizer, BertForMaskedLM

    from tunelab.data.sources import Row

    model = BertForMaskedLM.from_pretrained(str(tiny_mlm_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_mlm_dir))
    overrides = [f"model.name={tiny_mlm_dir}", "prompt.lm=masked", "prompt.template={text} it was {mask} ."]
    cfg = config.load(None, ["task=prompt_classification", *overrides, "prompt.verbalizer={0: [bad], 1: [goodish]}"])
    words = pc.label_words(cfg, tok, ["0", "1"])
    feats = pc.encode([Row("the movie", None, "1", 1)], tok, (cfg, ["0", "1"]), "f")
    got = pc.prompt_logits(model, pc.collate_words(feats, words, tok.pad_token_id, tok.mask_token_id))
    expected = []
    for _, w, _ in words:  # [CLS] the movie it was [MASK]*len(w) . [SEP]
        head = [tok.cls_token_id] + tok("the movie it was", add_special_tokens=False)["input_ids"]
        ids = head + [tok.mask_token_id] * len(w) + tok(".", add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
        logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
        expected.append(sum(float(logp[len(head) + j, t]) for j, t in enumerate(w)))
    assert len(words[1][1]) > 1 and got[0].tolist() == pytest.approx(expected, abs=1e-4)
    with torch.enable_grad():
        args = ["train", "--quiet", "task=prompt_classification", *overrides, "prompt.verbalizer={0: [bad], 1: [good]}"]
        args += [f"data.train={sentiment_tsv}", "data.text_column=sentence", "method=lora", "train.max_steps=3"]
        assert cli.main([*args, "train.batch_size=8", f"output_dir={tmp_path / 'mlm'}"]) == 0
    assert "AutoModelForMaskedLM" == pc.PromptClassification().model_class(cfg)
