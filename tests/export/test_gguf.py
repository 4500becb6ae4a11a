"""tunelab export --format gguf: our converter, read back with the gguf package's reader and with transformers."""

from __future__ import annotations

import json

import pytest
import torch

from tunelab import cli, runs
from tunelab.export import gguf, llamacpp


def test_rope_reordering_is_a_per_head_interleave_and_invertible():
    w = torch.arange(2 * 4 * 3, dtype=torch.float32).view(8, 3)  # 2 heads of size 4, 3 inputs
    out = gguf.rope_interleave(w, 2)
    # head 0 rows (0 1 | 2 3) -> 0 2 1 3; head 1 rows (4 5 | 6 7) -> 4 6 5 7
    assert torch.equal(out[:, 0], torch.tensor([0, 6, 3, 9, 12, 18, 15, 21], dtype=torch.float32))
    assert torch.equal(gguf.rope_deinterleave(out, 2), w)


def test_parity_prompts_come_from_the_task_protocol():
    from tunelab.data.templates import Example
    from tunelab.tasks import TASKS

    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    chat2 = chat + [{"role": "user", "content": "and?"}, {"role": "assistant", "content": "bye"}]
    rows = [Example(chat, None, 1), Example(chat2, None, 2), Example(None, "one two three four five", 3)]
    assert TASKS["causal_lm"].prompts(rows) == [chat[:1], chat2[:3], "one two"]
    assert TASKS["classification"].prompts(rows) == [] and TASKS["token_classification"].prompts(rows) == []


@pytest.fixture(scope="module")
def gguf_runs(tiny_lm_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    out = {}
    for dtype in ("f32", "q8_0"):
        out[dtype] = root / dtype
        assert (
            cli.main(
                [
                    "export",
                    str(tiny_lm_run),
                    str(out[dtype]),
                    "--format",
                    "gguf",
                    "--dtype",
                    dtype,
                    "--parity-prompts",
                    "2",
                    "--parity-tokens",
                    "8",
                    "--latency-examples",
                    "2",
                    "--batch-size",
                    "4",
                ]
            )
            == 0
        )
    return out


def test_gguf_file_reads_back_with_the_metadata_and_tensors_llama_cpp_expects(gguf_runs, tiny_lm_run):
    info = json.loads((gguf_runs["q8_0"] / "model" / "format.json").read_text())
    meta, tensors = gguf.read_back(gguf_runs["q8_0"] / "model" / info["file"])
    source = runs.load_run(tiny_lm_run)
    cfg, tok = source.model.config, source.tokenizer
    assert meta["general.architecture"] == "llama" and meta["llama.block_count"] == 2
    assert meta["llama.embedding_length"] == 32 and meta["llama.attention.head_count_kv"] == 2
    assert meta["llama.rope.freq_base"] == pytest.approx(cfg.rope_parameters["rope_theta"])
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] in ("gpt-2", "smollm")
    assert len(meta["tokenizer.ggml.tokens"]) == cfg.vocab_size and meta["tokenizer.ggml.tokens"][
        5
    ] == tok.convert_ids_to_tokens(5)
    assert meta["tokenizer.ggml.eos_token_id"] == tok.eos_token_id and "im_start" in meta["tokenizer.chat_template"]
    assert len(meta["tokenizer.ggml.merges"]) > 40000
    assert tensors["blk.0.attn_q.weight"] == ("Q8_0", [32, 32]) and tensors["blk.1.ffn_down.weight"] == (
        "Q8_0",
        [64, 32],
    )
    assert (
        tensors["blk.0.attn_norm.weight"][0] == "F32" and "output.weight" not in tensors
    )  # tied: llama.cpp reuses token_embd
    assert len(tensors) == 1 + 2 * 9 + 1


def test_gguf_weights_round_trip_through_transformers_and_generate_the_same_tokens(gguf_runs, tiny_lm_run):
    source = runs.load_run(tiny_lm_run)
    from tunelab.recipes.merge import plain_model

    merged = plain_model(source, tiny_lm_run)
    exact = runs.load_run(
        gguf_runs["f32"]
    )  # torch back-end: transformers reads the GGUF and undoes the RoPE reordering
    ids = source.tokenizer(["Say the word good", "hi"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(exact.model(**ids).logits, merged(**ids).logits, rtol=1e-4, atol=1e-4)
    record = json.loads((gguf_runs["q8_0"] / "cost.json").read_text())
    check = record["parity"]["torch_from_gguf"]
    assert check["prompts"] == 2 and check["tokens_per_prompt"] == 8
    f32 = json.loads((gguf_runs["f32"] / "cost.json").read_text())
    assert f32["parity"]["torch_from_gguf"]["identical"] == 2
    assert record["result"]["size_mb"] < 0.5 * f32["result"]["size_mb"]


def test_gguf_run_generates_and_refuses_classifiers(gguf_runs, tiny_cls_run, tmp_path, capsys):
    assert cli.main(["generate", str(gguf_runs["q8_0"]), "--prompt", "Say the word good", "--max-new-tokens", "4"]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(tiny_cls_run), str(tmp_path / "x"), "--format", "gguf"]) == 2
    assert "--format onnx" in capsys.readouterr().err


@pytest.mark.skipif(not llamacpp.available(), reason=llamacpp.INSTALL_HINT)
def test_llama_cpp_runs_the_file_with_greedy_parity(gguf_runs):
    record = json.loads((gguf_runs["f32"] / "cost.json").read_text())
    check = record["parity"]["llamacpp"]
    # f32 weights: only accumulation order differs from PyTorch, so every greedy token agrees on a random tiny model
    # except at near-ties, whose margin the record shows
    for row in check["per_prompt"]:
        assert row["equal"] or row["reference_margin_at_difference"] < 1e-3
    assert record["generation_tokens_per_s"]["llamacpp"] > 0


@pytest.mark.skipif(not llamacpp.available(), reason=llamacpp.INSTALL_HINT)
def test_serve_backend_llamacpp_answers_like_the_torch_backend(gguf_runs):
    import httpx

    from tests.serve.harness import client, running
    from tunelab.serve import registry

    run = str(gguf_runs["f32"])
    on_torch = registry.load_all([f"t={run}"], log=lambda m: None, backend="torch")
    on_llama = registry.load_all([f"l={run}"], log=lambda m: None, backend="llamacpp")
    from tunelab.serve.engine import Engine

    assert isinstance(on_llama["l"].engine, Engine) and on_torch["t"].engine is None
    messages = [{"role": "user", "content": "Say the word good"}]
    with running({**on_torch, **on_llama}, keys=["k"], max_tokens=16) as url:
        c = client(url, "k")
        torch_text = (
            c.chat.completions.create(model="t", messages=messages, max_tokens=12, temperature=0)
            .choices[0]
            .message.content
        )
        reply = c.chat.completions.create(model="l", messages=messages, max_tokens=12, temperature=0, n=2)
        assert [ch.message.content for ch in reply.choices] == [torch_text, torch_text]
        assert reply.usage.completion_tokens <= 24 and reply.choices[0].finish_reason in ("length", "stop")
        pieces = [
            ch.choices[0].delta.content or ""
            for ch in c.chat.completions.create(model="l", messages=messages, max_tokens=12, temperature=0, stream=True)
        ]
        assert "".join(pieces) == torch_text
        assert httpx.post(url + "/v1/chat/completions", json={"model": "l", "messages": messages}).status_code == 401
        too_long = httpx.post(
            url + "/v1/completions",
            headers={"Authorization": "Bearer k"},
            json={"model": "l", "prompt": "hi", "max_tokens": 999},
        )
        assert too_long.status_code == 400 and "cap of 16" in too_long.text
        predict = httpx.post(
            url + "/v1/predict", headers={"Authorization": "Bearer k"}, json={"model": "l", "input": "hi"}
        )
        assert predict.status_code == 400 and predict.json()["error"]["code"] == "wrong_endpoint"
        metrics = httpx.get(url + "/metrics").text
    assert 'tunelab_generated_tokens_total{model="l"}' in metrics and "tunelab_batch_seconds_count" in metrics


def test_serve_refuses_backend_llamacpp_for_a_training_run(tiny_lm_run):
    from tunelab.errors import TunelabError
    from tunelab.serve import registry

    with pytest.raises(TunelabError, match="--format gguf"):
        registry.load_all([str(tiny_lm_run)], log=lambda m: None, backend="llamacpp")


def test_storage_type_rules():
    import numpy as np

    assert gguf.storage_type("blk.0.attn_norm.weight", np.zeros(64), "q4_0") == "f32"  # 1-D stays f32
    assert gguf.storage_type("blk.0.attn_q.weight", np.zeros((64, 64)), "q4_0") == "q4_0"
    assert gguf.storage_type("blk.0.attn_q.weight", np.zeros((64, 48)), "q8_0") == "f16"  # rows not a multiple of 32
    assert gguf.storage_type("token_embd.weight", np.zeros((100, 64)), "q4_1") == "q8_0"
    assert gguf.storage_type("token_embd.weight", np.zeros((100, 64)), "f16") == "f16"


def test_parity_compare_reports_where_and_how_close():
    from tunelab.export import parity

    reference = [([1, 2, 3, 4], [5.0, 4.0, 0.001, 3.0]), ([7, 8], [1.0, 1.0])]
    out = parity.compare(reference, [[1, 2, 9, 9], [7, 8]])
    assert out["identical"] == 1 and out["matching_tokens"] == 4
    assert out["per_prompt"][0] == {
        "equal": False,
        "first_difference": 2,
        "reference_margin_at_difference": 0.001,
        "matching_prefix": 2,
    }


def test_export_flag_lists_every_gguf_dtype():
    from tunelab import cli
    from tunelab.export import gguf

    export = cli.build_parser()._subparsers._group_actions[0].choices["export"]
    (dtype,) = [a for a in export._actions if "--dtype" in a.option_strings]
    assert tuple(dtype.choices) == gguf.DTYPES
