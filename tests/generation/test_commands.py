"""`tunelab generate` (generation/commands.py) and its target loading (generation/target.py): stdout carries only the generated text; JSONL in and out."""

from __future__ import annotations

import json

import pytest

from tunelab import cli
from tunelab.errors import ConfigError
from tunelab.generation import GenerationConfig, generate, target


def test_prompt_prints_only_the_generated_text(tiny_llama_dir, capsys):
    assert cli.main(["generate", str(tiny_llama_dir), "--prompt", "hello world", "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    tgt = target.load(str(tiny_llama_dir))
    expected = generate(
        tgt.model, tgt.tokenizer, ["hello world"], GenerationConfig(max_new_tokens=5), log=lambda m: None
    )[0].text
    assert out == expected + "\n" and not out.startswith("hello world")


def test_jsonl_prompts_and_messages_to_jsonl(tiny_llama_dir, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"prompt": "the movie"})
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "hi"}]})
        + "\n"
    )
    assert (
        cli.main(
            [
                "generate",
                str(tiny_llama_dir),
                "--input",
                str(src),
                "--output",
                str(tmp_path / "out.jsonl"),
                "--max-new-tokens",
                "3",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["new_tokens"] for r in rows] == [3, 3] and all(r["finish_reason"] == "length" for r in rows)


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"prompt": 3}', 'expected {"prompt": TEXT}'),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "messages[0]"),
        ("not json", "not valid JSON"),
    ],
)
def test_bad_prompt_file_names_line(tiny_llama_dir, tmp_path, capsys, line, expected):
    src = tmp_path / "in.jsonl"
    src.write_text('{"prompt": "ok"}\n' + line + "\n")
    assert cli.main(["generate", str(tiny_llama_dir), "--input", str(src)]) == 2
    err = capsys.readouterr().err
    assert f"{src}:2:" in err and expected in err


def test_overrides_are_validated():
    cfg = target.with_overrides(GenerationConfig(), {"top_k": 3, "stop": ["###"]})
    assert (cfg.top_k, cfg.stop) == (3, ["###"])
    with pytest.raises(ConfigError, match="did you mean 'generation.top_k'"):
        target.with_overrides(GenerationConfig(), {"topk": 3})
    with pytest.raises(ConfigError, match="temperature"):
        target.with_overrides(GenerationConfig(), {"temperature": -1})


def test_classification_run_cannot_generate(tmp_path):
    (tmp_path / "config.yaml").write_text("task: classification\n")
    (tmp_path / "model").mkdir()
    from tunelab.errors import TunelabError

    with pytest.raises(TunelabError, match="a classification run cannot generate text"):
        target.load(str(tmp_path))
