"""Templates, verbalizers and label-word scoring against hand computations on tiny random models."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab import config
from tunelab.errors import ConfigError, DataError
from tunelab.prompting import scoring
from tunelab.prompting import verbalizer as vb
from tunelab.prompting.config import PromptConfig


def test_render_fills_slots_keeps_braces_and_drops_the_space_before_the_mask():
    assert vb.render("{text} It was {mask}.", " a {b} film ") == ("a {b} film It was", ".")
    assert vb.render("{text} ? {mask} , {text_pair}", "x", "y") == ("x ?", " , y")
    assert vb.render("Review: {text}", "x") == ("Review: x", "")  # no {mask}: the word goes at the end
    with pytest.raises(DataError, match="text_pair"):
        vb.render("{text} {text_pair} {mask}", "x", None)
    assert vb.demonstration("{text} It was {mask}.", "fun", None, "great", " ") == "fun It was great."


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("It was {mask}.", "no {text} slot"),
        ("{text} {label}", "unknown slot {label}"),
        ("{text} {text}", "use it once"),
    ],
)
def test_template_errors_name_the_key(template, message):
    with pytest.raises(ConfigError, match="prompt.template") as err:
        config.load(None, [f"prompt.template={template}"])
    assert message in str(err.value)


def test_verbalizer_accepts_words_or_lists_and_refuses_empty_words():
    assert PromptConfig(verbalizer={0: "bad", 1: ["good", "great"]}).verbalizer == {
        "0": ["bad"],
        "1": ["good", "great"],
    }
    with pytest.raises(ConfigError, match="prompt.verbalizer"):
        config.load(None, ["prompt.verbalizer={0: bad, 1: ''}"])


def test_verbalizer_errors_missing_label_unknown_label_and_empty_tokenisation(tiny_llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    with pytest.raises(ConfigError, match=r"no words for label\(s\) '2'"):
        vb.build_verbalizer({"0": ["bad"], "1": ["good"]}, ["0", "1", "2"], tok, " ")
    with pytest.raises(ConfigError, match=r"'7' do not occur"):
        vb.build_verbalizer({"0": ["bad"], "1": ["good"], "7": ["x"]}, ["0", "1"], tok, " ")

    class Empty:  # a tokenizer that drops the word (e.g. only unknown characters stripped by normalisation)
        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [] if "zzz" in text else [5]}

    with pytest.raises(ConfigError, match="'zzz' tokenises to nothing"):
        vb.build_verbalizer({"0": ["bad"], "1": ["zzz"]}, ["0", "1"], Empty(), " ")


def test_word_and_label_scores_by_hand():
    assert vb.word_score([-1.0, -3.0], "sum") == -4.0
    assert vb.word_score([-1.0, -3.0], "mean") == -2.0
    (score,) = vb.label_scores([[math.log(0.2), math.log(0.3)]])
    assert score == pytest.approx(math.log(0.5))


def _tiny_llama(tiny_llama_dir):
    from transformers import AutoTokenizer, LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(str(tiny_llama_dir)).eval(), AutoTokenizer.from_pretrained(
        str(tiny_llama_dir)
    )


@torch.no_grad()
def test_causal_scores_equal_a_plain_forward_with_multi_token_words(tiny_llama_dir):
    model, tok = _tiny_llama(tiny_llama_dir)
    prompt = PromptConfig(
        template="{text} It was {mask}.", verbalizer={"neg": ["awful"], "pos": ["splendiferous", "fun"]}
    )
    verb = vb.build_verbalizer(prompt.verbalizer, ["neg", "pos"], tok, " ")
    assert len(verb.words[1][0]) > 1  # a multi-token word is part of the check
    scorer = scoring.Scorer(model, tok, verb, prompt, scoring.CAUSAL, batch_size=2)
    prefix = "bad film It was awful.\n\n"
    got = scoring.score(scorer, prefix, [("a great movie", None), ("dull", None)])

    def by_hand(text: str, word_ids) -> float:  # one forward over the whole sequence, no cache
        ctx = (
            tok(prefix, add_special_tokens=False)["input_ids"]
            + tok(text + " It was", add_special_tokens=False)["input_ids"]
        )
        ids = torch.tensor([ctx + list(word_ids)])
        logp = model(input_ids=ids).logits[0].log_softmax(-1)
        return sum(float(logp[len(ctx) + j - 1, t]) for j, t in enumerate(word_ids))

    for row, text in enumerate(["a great movie", "dull"]):
        neg = by_hand(text, verb.words[0][0])
        pos = math.log(sum(math.exp(by_hand(text, w)) for w in verb.words[1]))
        assert got[row].tolist() == pytest.approx([neg, pos], abs=1e-4)
    mean = scoring.Scorer(model, tok, verb, prompt.model_copy(update={"scoring": "mean"}), scoring.CAUSAL)
    long_word = verb.words[1][0]
    single = scoring.score(mean, prefix, [("dull", None)])
    neg = by_hand("dull", verb.words[0][0])
    assert float(single[0, 0]) == pytest.approx(neg, abs=1e-4)  # one token: mean = sum
    assert len(long_word) > 1


@torch.no_grad()
def test_masked_lm_cloze_scores_by_hand(tiny_mlm_dir):
    from transformers import AutoTokenizer, BertForMaskedLM

    model, tok = (
        BertForMaskedLM.from_pretrained(str(tiny_mlm_dir)).eval(),
        AutoTokenizer.from_pretrained(str(tiny_mlm_dir)),
    )
    prompt = PromptConfig(
        template="{text} it was {mask} .", verbalizer={"0": ["bad"], "1": ["great", "fun"]}, lm="masked"
    )
    verb = vb.build_verbalizer(prompt.verbalizer, ["0", "1"], tok, " ")
    scorer = scoring.Scorer(model, tok, verb, prompt, scoring.MASKED)
    got = scoring.score(scorer, "", [("the movie", None)])
    m = tok.mask_token_id

    def by_hand(word: str) -> float:
        ids = [tok.cls_token_id] + tok("the movie it was", add_special_tokens=False)["input_ids"]
        pos = len(ids)
        ids += [m] + tok(".", add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
        logp = model(input_ids=torch.tensor([ids])).logits[0, pos].log_softmax(-1)
        return float(logp[tok.convert_tokens_to_ids(word)])

    expected = [by_hand("bad"), math.log(math.exp(by_hand("great")) + math.exp(by_hand("fun")))]
    assert got[0].tolist() == pytest.approx(expected, abs=1e-4)


@torch.no_grad()
def test_masked_lm_multi_token_word_uses_one_mask_per_token(tiny_mlm_dir):
    from transformers import AutoTokenizer, BertForMaskedLM

    model, tok = (
        BertForMaskedLM.from_pretrained(str(tiny_mlm_dir)).eval(),
        AutoTokenizer.from_pretrained(str(tiny_mlm_dir)),
    )
    word = tok("goodish", add_special_tokens=False)["input_ids"]
    assert len(word) > 1
    (lp,) = vb.cloze_logprobs(model, tok, [("the movie was", ".", tuple(word))], batch_size=4)
    ids = [tok.cls_token_id] + tok("the movie was", add_special_tokens=False)["input_ids"]
    pos = len(ids)
    ids += [tok.mask_token_id] * len(word) + tok(".", add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    logp = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    assert lp == pytest.approx([float(logp[pos + j, t]) for j, t in enumerate(word)], abs=1e-5)


def test_lm_kind_from_architectures_or_the_config():
    assert scoring.lm_kind("auto", ["BertForMaskedLM"]) == "masked"
    assert scoring.lm_kind("auto", ["LlamaForCausalLM"]) == "causal"
    assert scoring.lm_kind("masked", ["LlamaForCausalLM"]) == "masked"
    with pytest.raises(ConfigError, match="prompt.lm"):
        scoring.lm_kind("auto", ["BertModel"])


@torch.no_grad()
def test_long_inputs_are_cut_for_masked_lms_and_refused_clearly_for_causal_prompts(tiny_mlm_dir, tiny_llama_dir):
    from transformers import AutoTokenizer, BertForMaskedLM

    model, tok = (
        BertForMaskedLM.from_pretrained(str(tiny_mlm_dir)).eval(),
        AutoTokenizer.from_pretrained(str(tiny_mlm_dir)),
    )
    (lp,) = vb.cloze_logprobs(model, tok, [("good " * 700, ".", (tok.convert_tokens_to_ids("bad"),))], batch_size=1)
    assert len(lp) == 1 and lp[0] < 0  # the beginning was cut to fit 512 positions
    llama, ltok = _tiny_llama(tiny_llama_dir)
    prompt = PromptConfig(verbalizer={"0": ["bad"], "1": ["good"]})
    scorer = scoring.Scorer(
        llama, ltok, vb.build_verbalizer(prompt.verbalizer, ["0", "1"], ltok, " "), prompt, "causal"
    )
    with pytest.raises(ConfigError, match="longer than the model's 256 positions"):
        scoring.score(scorer, "a good film. " * 100, [("fine", None)])
