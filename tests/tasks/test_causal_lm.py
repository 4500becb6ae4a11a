"""causal_lm task: packing equals unpacked loss, truncation policy, metrics, and a tiny end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunelab import config
from tunelab.data import templates
from tunelab.errors import DataError
from tunelab.models import load as model_load
from tunelab.tasks import causal_lm


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    src = model_load.resolve(str(tiny_llama_dir))
    model, _ = model_load.load_model(src, causal_lm.CausalLM.auto_class)
    return model.eval(), model_load.load_tokenizer(src)


def _examples(tok, n=4):
    rows = [
        templates.Example(
            [
                {"role": "user", "content": f"Say {w} " * (i + 1)},
                {"role": "assistant", "content": f"{w} " * (2 * i + 1)},
            ],
            None,
            i + 1,
        )
        for i, w in enumerate(["good", "bad", "movie", "plot", "fun"][:n])
    ]
    return causal_lm.encode(rows, tok, 256, "x", causal_lm.LMOptions(templates.chat_template(tok)))


def test_pack_restarts_positions_and_masks_boundaries():
    feats = [
        {"input_ids": [1, 2, 3], "labels": [1, 2, 3]},
        {"input_ids": [4, 5], "labels": [4, 5]},
        {"input_ids": [6, 7, 8], "labels": [-100, 7, 8]},
    ]
    rows = causal_lm.pack(feats, max_length=5)
    assert rows == [
        {"input_ids": [1, 2, 3, 4, 5], "labels": [-100, 2, 3, -100, 5], "position_ids": [0, 1, 2, 0, 1]},
        {"input_ids": [6, 7, 8], "labels": [-100, 7, 8], "position_ids": [0, 1, 2]},
    ]


@pytest.mark.parametrize("train_on", ["assistant", "all"])
def test_packed_loss_equals_unpacked_per_example(tiny, train_on):
    """Per-example summed loss from one packed row equals each example run alone (fp32, atol 1e-4)."""
    model, tok = tiny
    rows = [
        templates.Example(
            [{"role": "user", "content": f"Say {w}"}, {"role": "assistant", "content": f"{w} " * (i + 2)}], None, i
        )
        for i, w in enumerate(["good", "bad", "movie"])
    ]
    feats = causal_lm.encode(rows, tok, 256, "x", causal_lm.LMOptions(templates.chat_template(tok), train_on=train_on))
    with torch.no_grad():
        alone = [causal_lm.token_losses(model, causal_lm.collate([f], tok.pad_token_id))[0].sum().item() for f in feats]
        packed = causal_lm.pack(feats, 10_000)
        assert len(packed) == 1
        batch = causal_lm.collate(packed, tok.pad_token_id)
        assert "attention_mask" not in batch
        ce, _ = causal_lm.token_losses(model, batch)  # (1, seq-1)
    bounds = [0]
    for f in feats:
        bounds.append(bounds[-1] + len(f["input_ids"]))
    per_example = [ce[0, max(s - 1, 0) : e - 1].sum().item() for s, e in zip(bounds, bounds[1:])]
    assert per_example == pytest.approx(alone, abs=1e-4)
    # and the same rows padded together give the same loss as alone (padding is masked, not trained)
    with torch.no_grad():
        padded, _ = causal_lm.token_losses(model, causal_lm.collate(feats, tok.pad_token_id))
    assert padded.sum(1).tolist() == pytest.approx(alone, abs=1e-4)


def test_overlong_truncate_and_drop(tiny):
    model, tok = tiny
    rows = [
        templates.Example([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "good " * n}], None, n)
        for n in (2, 80)
    ]
    tpl = templates.chat_template(tok)
    stats = causal_lm.EncodeStats()
    feats = causal_lm.encode(rows, tok, 60, "x", causal_lm.LMOptions(tpl, overlong="truncate"), stats)
    assert (stats.truncated, stats.dropped, [len(f["input_ids"]) <= 60 for f in feats]) == (1, 0, [True, True])
    stats = causal_lm.EncodeStats()
    feats = causal_lm.encode(rows, tok, 60, "x", causal_lm.LMOptions(tpl, overlong="drop"), stats)
    assert (stats.truncated, stats.dropped, len(feats)) == (0, 1, 1)
    stats = causal_lm.EncodeStats()  # a reply cut away entirely leaves nothing to learn: dropped
    assert causal_lm.encode(rows[:1], tok, 20, "x", causal_lm.LMOptions(tpl), stats) == [] and stats.dropped == 1


def test_padding_fraction_hand_computed():
    assert causal_lm.padding_fraction([[4, 2], [3, 3]]) == pytest.approx(1 - 12 / 14)
    assert causal_lm.padding_fraction([[5]]) == 0


def test_generation_metrics_perfect_and_wrong():
    perfect = causal_lm.generation_metrics(["the cat sat on the mat"], ["the cat sat on the mat"], ["eos"])
    assert perfect == {"rougeL": pytest.approx(1.0), "bleu": pytest.approx(100.0), "eos_rate": 1.0}
    wrong = causal_lm.generation_metrics(["dog", "cat sat"], ["mat", "the cat sat"], ["length", "eos"])
    assert wrong["rougeL"] == pytest.approx((0 + 0.8) / 2) and wrong["eos_rate"] == 0.5 and wrong["bleu"] < 10


def _cfg(tmp_path, tiny_llama_dir, write_alpaca, *extra):
    train = write_alpaca(tmp_path / "train.json", 48)
    dev = write_alpaca(tmp_path / "dev.json", 8, seed=1)
    return config.load(
        None,
        [
            "task=causal_lm",
            f"model.name={tiny_llama_dir}",
            f"data.train={train}",
            f"data.dev={dev}",
            f"output_dir={tmp_path / 'run'}",
            "model.max_length=128",
            "train.epochs=2",
            "train.batch_size=8",
            "train.lr=1e-2",
            "train.precision=fp32",
            "task.eval_generations=4",
            "task.eval_max_new_tokens=6",
            *extra,
        ],
    )


@pytest.mark.parametrize("packing", [False, True])
def test_train_lowers_dev_loss_and_writes_report(tmp_path, tiny_llama_dir, alpaca_writer, packing):
    from tunelab.recipes import finetune

    # packed: 48 examples fit in 16 rows, so smaller batches keep the number of optimizer steps comparable
    cfg = _cfg(
        tmp_path,
        tiny_llama_dir,
        alpaca_writer,
        "method=full",
        f"task.packing={packing}",
        f"train.batch_size={3 if packing else 8}",
    )
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    assert final["dev"]["loss"] < final["baseline"]["loss"] - 1.0
    assert final["dev"]["perplexity"] == pytest.approx(2.718281828 ** final["dev"]["loss"], rel=1e-4)
    assert final["data"]["train_rows"] < 48 if packing else final["data"]["train_rows"] == 48
    report = (tmp_path / "run" / "report.md").read_text()
    assert "padding fraction" in report and "before tuning" in report and "| baseline |" in report
    assert set(json.loads((tmp_path / "run" / "metrics.json").read_text())["dev"]) >= {
        "loss",
        "rougeL",
        "bleu",
        "eos_rate",
    }


def test_lora_run_folder_generates(tmp_path, tiny_llama_dir, alpaca_writer, capsys):
    from tunelab import cli
    from tunelab.recipes import finetune

    finetune.run(
        _cfg(tmp_path, tiny_llama_dir, alpaca_writer, "method=lora", "train.epochs=1", "task.eval_generations=0"),
        quiet=True,
        log=lambda m: None,
    )
    assert cli.main(["generate", str(tmp_path / "run"), "--chat", "Say the word good", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and "Say the word" not in out
    assert cli.main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "dev.json")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["perplexity"] == pytest.approx(2.718281828 ** metrics["loss"], rel=1e-4)
    # predict on a causal-LM run generates a reply per input line (the run's generation config)
    (tmp_path / "prompts.txt").write_text('Say the word good\n{"prompt": "the movie"}\n')
    assert cli.main(["predict", str(tmp_path / "run"), "--data", str(tmp_path / "prompts.txt")]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [ln["text"] for ln in lines] == ["Say the word good", "the movie"]
    assert all(isinstance(ln["output"], str) and ln["finish_reason"] in ("eos", "stop", "length") for ln in lines)


def test_bad_row_is_a_data_error_with_file_and_line(tmp_path, tiny_llama_dir, alpaca_writer):
    from tunelab.recipes import finetune

    cfg = _cfg(tmp_path, tiny_llama_dir, alpaca_writer)
    rows = json.loads(Path(cfg.data.train).read_text())
    rows[5]["output"] = ""
    Path(cfg.data.train).write_text(json.dumps(rows, indent=1))
    with pytest.raises(DataError, match=rf"{cfg.data.train}:\d+: Alpaca record needs a non-empty \"output\""):
        finetune.run(cfg, quiet=True, log=lambda m: None)


@pytest.mark.real
def test_real_lora_on_alpaca_lowers_dev_loss_and_stops(tmp_path, shared_data):
    """LoRA on SmolLM2-135M-Instruct, first 240 Alpaca training records (the 176 that fit 128 tokens are kept).

    Dev: a fixed subset, the first 24 dev records whose reference reply has at most 60 words (so a
    model that imitates the references can finish within the 128-token cap; 5 of the first 20 dev
    references are longer than that). Dev loss on those 24, greedy generations (128 new tokens at
    most) on the first 20. Bars: dev loss below the untuned model's, and >= 95% of generations end by EOS.
    Measured: dev loss 1.948 -> 1.805, EOS rate 0.65 -> 1.00; 136 s on one thread (300 s on a loaded machine).
    """
    from tunelab.recipes import finetune

    dev = [r for r in json.loads((shared_data / "alpaca" / "dev.json").read_text()) if len(r["output"].split()) <= 60][
        :24
    ]
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    cfg = config.load(
        Path(__file__).resolve().parents[2] / "examples" / "instruct" / "alpaca_lora.yaml",
        [
            f"output_dir={tmp_path / 'run'}",
            f"data.train={shared_data / 'alpaca' / 'train.json'}",
            f"data.dev={tmp_path / 'dev.json'}",
            "data.max_train_rows=240",
            "model.max_length=128",
            "task.overlong=drop",
            "task.packing=false",
            "train.lr=2e-3",
            "generation.batch_size=20",
        ],
    )
    final = finetune.run(cfg, quiet=True, log=lambda m: None)
    print({k: {m: final[k][m] for m in ("loss", "eos_rate", "rougeL", "bleu")} for k in ("baseline", "dev")})
    assert final["dev"]["loss"] < final["baseline"]["loss"]
    assert final["dev"]["eos_rate"] >= 0.95
    assert "after tuning (eos)" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_chunked_loss_equals_plain_loss_and_gradients(tiny_llama_dir, precision, chunk):
    """The chunked loss (target positions only, logits a chunk at a time) equals the full-logits loss, and so do the gradients."""
    src = model_load.resolve(str(tiny_llama_dir))
    model, _ = model_load.load_model(
        src, causal_lm.CausalLM.auto_class
    )  # full fine-tuning: the tied head/embedding gets gradients too
    tok = model_load.load_tokenizer(src)
    feats = _examples(tok, 3)
    batch = causal_lm.collate(feats, tok.pad_token_id)
    results = []
    for c in (0, chunk):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            task = causal_lm.CausalLM()
            loss, n = task.loss(task.forward(model, batch, chunk=c), batch)
        loss.backward()
        results.append((loss.item(), n, {k: p.grad.clone() for k, p in model.named_parameters()}))
    (plain, n0, g0), (chunked, n1, g1) = results
    assert n0 == n1 > 0
    tol = 1e-5 if precision == "fp32" else 2e-2
    assert chunked == pytest.approx(plain, rel=tol)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=tol, atol=tol * g0[k].abs().max().item())


def test_chunked_loss_falls_back_for_prompt_learning(tiny_llama_dir):
    from tunelab.methods import METHODS

    src = model_load.resolve(str(tiny_llama_dir))
    model, head = model_load.load_model(src, causal_lm.CausalLM.auto_class)
    assert causal_lm.lm_head(model) is not None
    model = METHODS["prompt-tuning"].apply(model, METHODS["prompt-tuning"].Config(), head)
    assert causal_lm.lm_head(model) is None


def test_mixed_data_sft_draws_each_batch_from_one_file_by_its_weight(tmp_path, tiny_llama_dir, alpaca_writer):
    from tunelab import config, runs
    from tunelab.recipes import finetune
    from tunelab.tasks import TASKS

    a, b = alpaca_writer(tmp_path / "a.json", 24), alpaca_writer(tmp_path / "b.json", 8, 1)
    overrides = [
        "task=causal_lm",
        f"model.name={tiny_llama_dir}",
        f"data.train={a}",
        f"task.mix=[{{train: '{b}', weight: 3}}]",
        "model.max_length=64",
        "train.batch_size=4",
        "task.eval_generations=0",
        f"output_dir={tmp_path / 'run'}",
    ]
    cfg = config.load(None, overrides)
    task, log = TASKS["causal_lm"], lambda m: None
    splits = finetune.read_splits(cfg, task, log)
    assert len(splits["mix1"]) == 8
    tokenizer, _, _ = runs.build_base(cfg, None)
    prepared = task.prepare(cfg, tokenizer, None, splits, log)
    mix = prepared.sampler
    assert mix.weights == pytest.approx([0.25, 0.75]) and mix.sizes[1] == 8
    assert len(prepared.features["train"]) == sum(mix.sizes)
    plan = [batch for epoch in range(40) for batch in mix.batches(epoch)]
    first = mix.sizes[0]
    assert all(max(b) < first or min(b) >= first for b in plan)  # one file per batch
    assert sum(min(b) >= first for b in plan) / len(plan) == pytest.approx(0.75, abs=0.05)
    final = finetune.run(config.load(None, [*overrides, "train.max_steps=2"]), quiet=True, log=log)
    assert final["steps"] == 2
    with pytest.raises(Exception, match="mix"):
        config.load(None, [*overrides, "task.mix=[{train: x, weight: 0}]"])


# --- CSV/TSV chat tables (customer-support style: instruction, intent, response) -------------------------------


def _table_cfg(path, *extra):
    return config.load(None, ["task=causal_lm", f"data.train={path}", "data.text_column=instruction", *extra])


def test_csv_rows_become_chats_with_the_system_hint(tmp_path):
    path = tmp_path / "support.csv"
    path.write_text(
        'instruction,intent,response\nwhere is my order,track_order,"It is on its way.\nTrack it at {{URL}}."\n'
        "i want a refund ,get_refund,Sure.\n",
        encoding="utf-8",
    )
    cfg = _table_cfg(path, "task.system_column=intent", "task.system_template=Intent: {}.")
    rows = causal_lm.CausalLM().read(cfg, str(path)).rows
    assert [r.line for r in rows] == [2, 4]  # the first reply spans two lines
    assert rows[0].messages == [
        {"role": "system", "content": "Intent: track_order."},
        {"role": "user", "content": "where is my order"},
        {"role": "assistant", "content": "It is on its way.\nTrack it at {{URL}}."},
    ]
    plain = causal_lm.CausalLM().read(_table_cfg(path), str(path)).rows  # no system_column: user + assistant only
    assert [m["role"] for m in plain[1].messages] == ["user", "assistant"]


def test_tsv_latin1_with_delimiter_and_positions(tmp_path):
    path = tmp_path / "chats.txt"
    path.write_bytes("caf\xe9 ouvert?@Oui, jusqu'\xe0 20 h.\n".encode("latin-1"))
    cfg = config.load(
        None,
        ["task=causal_lm", f"data.train={path}", "data.format=csv", "data.delimiter=@", "data.encoding=latin-1"]
        + ["data.has_header=false", "data.text_column=0", "task.response_column=1"],
    )
    (row,) = causal_lm.CausalLM().read(cfg, str(path)).rows
    assert row.messages[-1]["content"] == "Oui, jusqu'à 20 h." and row.messages[0]["content"] == "café ouvert?"


def test_csv_errors_name_file_line_and_column(tmp_path):
    path = tmp_path / "support.csv"
    path.write_text("instruction,answer\nhello,hi there\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"support.csv:1: .*'response'.*found none in the header.*answer"):
        causal_lm.CausalLM().read(_table_cfg(path), str(path))
    path.write_text("instruction,response\nhello,\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"support.csv:2: .*column 'response'"):
        causal_lm.CausalLM().read(_table_cfg(path), str(path))


def test_system_template_needs_a_slot():
    with pytest.raises(config.ConfigError, match=r"task.system_template: .* has no \{\}"):
        config.load(None, ["task=causal_lm", "task.system_column=intent", "task.system_template=Be kind."])
