"""Reading instruction data and rendering it with chat templates: formats, errors with file:line, loss masks."""

from __future__ import annotations

import json

import pytest

from tunelab.data import templates
from tunelab.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tok(tiny_llama_dir):
    from tunelab.models import load as model_load

    return model_load.load_tokenizer(model_load.resolve(str(tiny_llama_dir)))


CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]


def test_reads_alpaca_json_with_line_numbers(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(
        '[\n {"instruction": "Add", "input": "2 and 2", "output": "4"},\n {"instruction": "Hi", "output": "Hello"}\n]\n'
    )
    ex = templates.read_examples(str(path))
    assert [e.line for e in ex.rows] == [2, 3]
    assert ex.rows[0].messages == [{"role": "user", "content": "Add\n\n2 and 2"}, {"role": "assistant", "content": "4"}]
    assert ex.rows[1].messages[0] == {"role": "user", "content": "Hi"}


def test_reads_chat_and_sharegpt_jsonl(tmp_path):
    path = tmp_path / "c.jsonl"
    share = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    path.write_text(json.dumps({"messages": CHAT}) + "\n\n" + json.dumps(share) + "\n")
    ex = templates.read_examples(str(path))
    assert ex.rows[0].messages == CHAT
    assert ex.rows[1].messages == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert ex.rows[1].line == 3


def test_reads_plain_text_documents(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("first doc\nstill first\n\n\nsecond doc\n")
    ex = templates.read_examples(str(path))
    assert [(e.text, e.line) for e in ex.rows] == [("first doc\nstill first", 1), ("second doc", 5)]


@pytest.mark.parametrize(
    "content, line, expected",
    [
        ('[\n {"instruction": "a", "output": "b"},\n {"instruction": "a"}\n]', 3, 'non-empty "output"'),
        ('[\n {"instruction": "a", "output": "b"},\n {"instruction": "a", "output": \n]', 4, "not valid JSON"),
        ('[\n {"messages": [{"role": "robot", "content": "x"}]}\n]', 2, "one of ['assistant', 'system', 'user']"),
        ('[\n {"messages": [{"role": "user", "content": "x"}]}\n]', 2, "no assistant message"),
        ('[\n {"prompt": "x"}\n]', 2, "expected an Alpaca record"),
        ('{"instruction": "a"}', 1, "expected a JSON list"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, content, line, expected):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        templates.read_examples(str(path))
    assert str(err.value).startswith(f"{path}:{line}:")
    assert expected in str(err.value)


def test_skip_mode_reports_bad_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n{"instruction": "c", "output": "d"}\n')
    ex = templates.read_examples(str(path), on_error="skip")
    assert [e.line for e in ex.rows] == [1, 3]
    assert ex.skipped[0][0] == 2 and "output" in ex.skipped[0][1]


def test_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(DataError, match="cannot tell the format"):
        templates.read_examples(str(tmp_path / "x.csv"))
    with pytest.raises(DataError, match="file not found"):
        templates.read_examples(str(tmp_path / "missing.json"))


def _trained_text(tok, ids, labels):
    return tok.decode([t for t, lab in zip(ids, labels) if lab != -100])


def test_loss_mask_covers_exactly_the_assistant_replies_and_eos(tok):
    tpl = templates.chat_template(tok)
    ids, labels = templates.tokenize_conversation(tok, CHAT, tpl)
    eos = tok.eos_token
    assert _trained_text(tok, ids, labels) == f"Hello!{eos}4{eos}"
    # every trained token is an assistant token; the text around them is exactly the template's prompt parts
    assert tok.decode(ids) == templates.render(tok, CHAT, tpl)
    assert labels.count(tok.eos_token_id) == 2 and tok.pad_token_id == tok.eos_token_id  # pad == EOS, still trained


def test_fallback_template_appends_eos_and_masks(tok):
    tpl = templates.FALLBACK_TEMPLATES["alpaca"]
    ids, labels = templates.tokenize_conversation(tok, CHAT[1:3], tpl)
    text = tok.decode(ids)
    assert text.startswith("### Instruction:\nHi there\n\n### Response:\nHello!" + tok.eos_token)
    assert _trained_text(tok, ids, labels) == "Hello!" + tok.eos_token


def test_template_without_eos_gets_eos_appended(tok):
    tpl = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    ids, labels = templates.tokenize_conversation(tok, CHAT[1:3], tpl)
    assert tok.decode(ids) == "user: Hi there\nassistant: Hello!" + tok.eos_token + "\n"
    # " Hello" is one token that starts on the space of the prompt: it belongs to the reply
    assert _trained_text(tok, ids, labels) == " Hello!" + tok.eos_token


def test_train_on_all_and_plain_text(tok):
    ids, labels = templates.tokenize_conversation(tok, CHAT, templates.chat_template(tok), train_on="all")
    assert labels == ids
    ids, labels = templates.tokenize_text(tok, "hello world")
    assert ids[-1] == tok.eos_token_id and labels == ids


def test_fallback_used_only_without_own_template(tok):
    assert templates.chat_template(tok) == tok.chat_template

    class Bare:
        chat_template = None

    assert templates.chat_template(Bare(), "alpaca") == templates.FALLBACK_TEMPLATES["alpaca"]
    with pytest.raises(ConfigError, match="unknown template 'vicuna'"):
        templates.chat_template(Bare(), "vicuna")
