"""Decoding on a tiny random Llama: equality with transformers' generate, and one effect test per parameter."""

from __future__ import annotations

import copy

import pytest
import torch

from tunelab.generation import GenerationConfig, generate, stream
from tunelab.generation.generate import encode_prompt, finish, hold_back_stops
from tunelab.models import load as model_load

PROMPTS = ["hello world", "the movie was"]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    src = model_load.resolve(str(tiny_llama_dir))
    model, _ = model_load.load_model(src, "AutoModelForCausalLM")
    return model.eval(), model_load.load_tokenizer(src)


def gen(tiny, prompts=PROMPTS, **kw):
    model, tok = tiny
    return generate(model, tok, prompts, GenerationConfig(**{"max_new_tokens": 12, **kw}), log=lambda m: None)


def test_greedy_is_token_identical_to_transformers(tiny):
    model, tok = tiny
    ours = gen(tiny)
    for prompt, out in zip(PROMPTS, ours):
        enc = tok(prompt, return_tensors="pt")
        ref = model.generate(**enc, max_new_tokens=12, do_sample=False)[0, enc.input_ids.shape[1] :].tolist()
        assert out.tokens == ref
    assert [o.tokens for o in ours] == [
        gen(tiny, [p])[0].tokens for p in PROMPTS
    ]  # batching (left padding) changes nothing


def test_num_beams_1_and_top_k_1_sampling_equal_greedy(tiny):
    greedy = [o.tokens for o in gen(tiny)]
    assert [o.tokens for o in gen(tiny, num_beams=1)] == greedy
    assert [o.tokens for o in gen(tiny, do_sample=True, top_k=1, seed=3)] == greedy


def test_max_new_tokens_caps_length(tiny):
    out = gen(tiny, max_new_tokens=5)
    assert all(len(o.tokens) == 5 and o.finish_reason == "length" for o in out)


def test_sampling_seed_reproduces_and_varies(tiny):
    a, b, c = (gen(tiny, do_sample=True, top_k=0, seed=s) for s in (1, 1, 2))
    assert [o.tokens for o in a] == [o.tokens for o in b]
    assert [o.tokens for o in a] != [o.tokens for o in c]
    assert [o.tokens for o in a] != [o.tokens for o in gen(tiny)]


def test_temperature_and_top_p(tiny):
    greedy = [o.tokens for o in gen(tiny)]
    assert [
        o.tokens for o in gen(tiny, do_sample=True, top_k=0, temperature=1e-4, seed=5)
    ] == greedy  # near-zero: argmax
    assert [o.tokens for o in gen(tiny, do_sample=True, top_k=0, top_p=1e-6, seed=5)] == greedy  # only the top token
    hot = [len(set(o.tokens)) for o in gen(tiny, do_sample=True, top_k=0, temperature=5.0, seed=5)]
    assert sum(hot) > sum(len(set(t)) for t in greedy)  # flatter distribution: more distinct tokens


def test_repetition_penalty_and_no_repeat_ngram(tiny):
    greedy = gen(tiny)
    assert any(len(set(o.tokens)) < len(o.tokens) for o in greedy)  # the random model repeats itself
    penalised = gen(tiny, repetition_penalty=50.0)
    assert sum(len(set(o.tokens)) for o in penalised) > sum(len(set(o.tokens)) for o in greedy)
    model, tok = tiny
    for prompt, o in zip(PROMPTS, gen(tiny, no_repeat_ngram_size=1)):
        seq = tok(prompt)["input_ids"] + o.tokens
        assert len(set(seq)) == len(seq)  # no 1-gram ever repeats


def _logprob(model, prompt_ids, new_ids) -> float:
    ids = torch.tensor([prompt_ids + new_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
    return float(sum(logp[len(prompt_ids) - 1 + i, t] for i, t in enumerate(new_ids)))


def test_beam_search_finds_likelier_sequences(tiny):
    model, tok = tiny
    for greedy, beam, prompt in zip(gen(tiny, max_new_tokens=6), gen(tiny, max_new_tokens=6, num_beams=4), PROMPTS):
        ids = tok(prompt)["input_ids"]
        assert _logprob(model, ids, beam.tokens) >= _logprob(model, ids, greedy.tokens) - 1e-4


def test_length_penalty_favours_longer_beams(tiny):
    """With an EOS that beams can reach, a higher length_penalty never gives shorter outputs, and here gives longer ones."""
    model, tok = tiny
    model = copy.deepcopy(model)
    enc = tok(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        candidates = model(**enc).logits[0, -1].topk(8).indices.tolist()
    longer = 0
    for eos in candidates:
        model.generation_config.eos_token_id = eos
        lengths = [
            len(
                generate(
                    model,
                    tok,
                    PROMPTS[:1],
                    GenerationConfig(max_new_tokens=8, num_beams=4, length_penalty=lp, early_stopping=True),
                    log=lambda m: None,
                )[0].tokens
            )
            for lp in (-5.0, 5.0)
        ]
        assert lengths[1] >= lengths[0]
        longer += lengths[1] > lengths[0]
    assert longer >= 1


def test_stop_strings_cut_text(tiny):
    model, tok = tiny
    base = gen(tiny, PROMPTS[:1])[0]
    stop = base.text.split()[1]  # a word the greedy output contains
    out = gen(tiny, PROMPTS[:1], stop=[stop])[0]
    assert out.finish_reason == "stop" and stop not in out.text and base.text.startswith(out.text)
    assert len(out.tokens) < len(base.tokens)  # generation itself stopped early


def test_finish_reasons_and_eos_cut(tiny):
    _, tok = tiny
    eos = tok.eos_token_id
    assert finish(tok, [905, eos, eos], {eos}, []).tokens == [905, eos]
    assert finish(tok, [905, eos], {eos}, []).finish_reason == "eos"
    assert finish(tok, [905, 905], {eos}, []).finish_reason == "length"


def test_hold_back_stops_never_shows_part_of_a_stop_string():
    pieces = ["Hel", "lo ST", "OP there"]
    assert "".join(hold_back_stops(iter(pieces), ["STOP"])) == "Hello "
    assert list(hold_back_stops(iter(pieces), [])) == pieces


def test_stream_matches_generate(tiny):
    model, tok = tiny
    chat = [{"role": "user", "content": "hello"}]
    cfg = GenerationConfig(max_new_tokens=10)
    pieces = list(stream(model, tok, [{"role": "user", "content": "the movie was"}], cfg, log=lambda m: None))
    assert len(pieces) > 1  # text arrives as it is produced, not at the end
    streamed = "".join(stream(model, tok, chat, cfg, log=lambda m: None))
    assert streamed == generate(model, tok, [chat], cfg, log=lambda m: None)[0].text


def test_context_window_keeps_system_and_recent_turns(tiny):
    _, tok = tiny
    turns = [{"role": "system", "content": "SYS"}]
    for i in range(10):
        turns += [
            {"role": "user", "content": f"question {i} " * 5},
            {"role": "assistant", "content": f"answer {i} " * 5},
        ]
    turns.append({"role": "user", "content": "last question"})
    logs = []
    ids, dropped = encode_prompt(tok, turns, budget=120, log=logs.append)
    text = tok.decode(ids)
    assert len(ids) <= 120 and dropped > 0 and dropped % 2 == 0  # whole turns go
    assert "SYS" in text and "last question" in text and "question 0" not in text and "answer 9" in text
    assert logs == [f"context window: dropped the {dropped} oldest message(s) to fit 120 prompt tokens"]


def test_context_window_from_config_and_model(tiny):
    model, tok = tiny
    long_prompt = "good " * 300  # longer than the tiny model's 256 positions
    logs = []
    out = generate(model, tok, [long_prompt], GenerationConfig(max_new_tokens=6), log=logs.append)
    assert len(out[0].tokens) == 6 and "cut to its last 250" in logs[0]
    logs.clear()
    generate(model, tok, ["good " * 50], GenerationConfig(max_new_tokens=6, context_window=32), log=logs.append)
    assert "cut to its last 26" in logs[0]
