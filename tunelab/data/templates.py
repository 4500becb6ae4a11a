"""Instruction data: read Alpaca / chat / ShareGPT / plain-text files into conversations, render them
with a chat template and mark which tokens the loss is computed on.

A conversation is a list of ``{"role", "content"}`` messages. Labels come from the template
(the assistant spans), never from pad masking, so an EOS that equals the pad token still trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.errors import DataError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}

# Fallback templates for tokenizers without their own. The end of each turn is the tokenizer's EOS,
# so a model trained with it learns to emit EOS (and generation stops there).
FALLBACK_TEMPLATES = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + eos_token + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "alpaca": (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
        "{% elif m['role'] == 'user' %}{{ '### Instruction:\n' + m['content'] + '\n\n' }}"
        "{% else %}{{ '### Response:\n' + m['content'] + eos_token + '\n\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
}


@dataclass
class Example:
    """One training example: a conversation, or raw text for continued pretraining."""

    messages: list[dict] | None
    text: str | None
    line: int  # 1-based line in the source file
    label: None = None  # no class label (lets generic split code treat all rows alike)


@dataclass
class Examples:
    rows: list[Example]
    source: str
    skipped: list[tuple[int, str]] = field(default_factory=list)


# ---------------------------------------------------------------- reading


def read_examples(path: str, format: str = "auto", on_error: str = "raise") -> Examples:
    """Read Alpaca JSON/JSONL, chat JSONL (``messages``), ShareGPT (``conversations``) or plain text.

    ``.txt`` (or format ``text``) is plain text: blank-line separated documents. Every bad record
    is a DataError ``path:line: ...`` (or skipped and reported with ``on_error="skip"``).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found")
    fmt = format if format != "auto" else {".json": "json", ".jsonl": "jsonl", ".txt": "text"}.get(p.suffix.lower())
    if fmt not in ("json", "jsonl", "text"):
        raise DataError(
            f"{path}: cannot tell the format from the extension '{p.suffix}'; use .json, .jsonl or .txt (or set data.format)"
        )
    text = p.read_text(encoding="utf-8")
    if fmt == "text":
        return Examples(_text_documents(text), path)
    records = _json_records(text, path) if fmt == "json" else _jsonl_records(text, path)
    out = Examples([], path)
    for line, obj in records:
        try:
            out.rows.append(
                Example(to_messages(obj), None, line)
                if "text" not in obj or len(obj) != 1
                else Example(None, _text(obj), line)
            )
        except DataError as exc:
            if on_error == "raise":
                raise DataError(f"{path}:{line}: {exc}") from None
            out.skipped.append((line, str(exc)))
    if not out.rows:
        raise DataError(f"{path}: no examples")
    return out


def _text(obj: dict) -> str:
    if not isinstance(obj["text"], str) or not obj["text"].strip():
        raise DataError('"text" must be a non-empty string')
    return obj["text"]


def _text_documents(text: str) -> list[Example]:
    docs, start, buf = [], 1, []
    for n, line in enumerate(text.splitlines() + [""], start=1):
        if line.strip():
            if not buf:
                start = n
            buf.append(line)
        elif buf:
            docs.append(Example(None, "\n".join(buf), start))
            buf = []
    return docs


def _json_records(text: str, path: str) -> list[tuple[int, object]]:
    """Elements of a top-level JSON list, each with the line it starts on."""
    dec = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if not text.startswith("[", pos):
        raise DataError(f"{path}:1: expected a JSON list of examples ([{{...}}, ...])")
    pos = _skip_ws(text, pos + 1)
    out: list[tuple[int, object]] = []
    while not text.startswith("]", pos):
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        out.append((line, obj))
        pos = _skip_ws(text, pos)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
        elif not text.startswith("]", pos):
            raise DataError(f"{path}:{text.count(chr(10), 0, pos) + 1}: expected ',' or ']' between examples")
    return out


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _jsonl_records(text: str, path: str) -> list[tuple[int, object]]:
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    return out


def to_messages(obj) -> list[dict]:
    """One record (Alpaca, chat ``messages`` or ShareGPT ``conversations``) as a list of messages."""
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        return _check_messages(obj["messages"], "messages", "role", "content", {r: r for r in ROLES})
    if "conversations" in obj:
        return _check_messages(obj["conversations"], "conversations", "from", "value", SHAREGPT_ROLES)
    if "instruction" in obj:
        return _alpaca(obj)
    raise DataError(
        f"expected an Alpaca record (instruction, input, output), a chat record (messages) or ShareGPT (conversations); got keys {sorted(obj)}"
    )


def _alpaca(obj: dict) -> list[dict]:
    for key in ("instruction", "output"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise DataError(f'Alpaca record needs a non-empty "{key}" string')
    extra = obj.get("input") or ""
    if not isinstance(extra, str):
        raise DataError('Alpaca "input" must be a string')
    prompt = obj["instruction"].strip() + (f"\n\n{extra.strip()}" if extra.strip() else "")
    msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": obj["output"].strip()}]
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        msgs.insert(0, {"role": "system", "content": obj["system"].strip()})
    return msgs


def _check_messages(items, key: str, role_key: str, text_key: str, roles: dict) -> list[dict]:
    if not isinstance(items, list) or not items:
        raise DataError(f'"{key}" must be a non-empty list')
    out = []
    for i, m in enumerate(items):
        if not isinstance(m, dict) or m.get(role_key) not in roles or not isinstance(m.get(text_key), str):
            raise DataError(
                f'{key}[{i}]: expected {{"{role_key}": one of {sorted(roles)}, "{text_key}": string}}, got {m!r:.80}'
            )
        role = roles[m[role_key]]
        if role == "system" and i != 0:
            raise DataError(f"{key}[{i}]: a system message may only come first")
        out.append({"role": role, "content": m[text_key]})
    if not any(m["role"] == "assistant" for m in out):
        raise DataError(f'"{key}" has no assistant message to learn from')
    return out


# ---------------------------------------------------------------- rendering


def chat_template(tokenizer, fallback: str = "chatml") -> str:
    """The tokenizer's own chat template, else the named fallback."""
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, str) and own:
        return own
    if fallback not in FALLBACK_TEMPLATES:
        from tunelab.errors import ConfigError

        raise ConfigError(f"lm.chat_template: unknown template '{fallback}'; valid: {', '.join(FALLBACK_TEMPLATES)}")
    return FALLBACK_TEMPLATES[fallback]


def render(
    tokenizer, messages: list[dict], template: str, add_generation_prompt: bool = False, tools: list[dict] | None = None
) -> str:
    """The chat as text; ``tools`` (OpenAI function specs) go to templates that render them (see ``knows_tools``)."""
    return tokenizer.apply_chat_template(
        messages,
        chat_template=template,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        **({"tools": tools} if tools else {}),
    )


def knows_tools(template: str) -> bool:
    """Whether a chat template renders a ``tools`` variable (Llama 3.1, Qwen 2.5, Hermes...); others ignore it."""
    import re

    return re.search(r"\btools\b", template) is not None


def assistant_spans(tokenizer, messages: list[dict], template: str) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant reply (content + end-of-turn).

    A reply's span is what rendering through that reply adds to rendering the prompt before it
    (``add_generation_prompt=True``), with trailing whitespace removed.
    """
    full = render(tokenizer, messages, template)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], template, add_generation_prompt=True)
        through = render(tokenizer, messages[: i + 1], template)
        if not full.startswith(through) or not through.startswith(before):
            raise DataError(
                "the chat template does not render conversations as growing prefixes; cannot locate assistant turns"
            )
        spans.append((len(before), len(through.rstrip())))
    return full, spans


def tokenize_conversation(
    tokenizer, messages: list[dict], template: str, train_on: str = "assistant"
) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 outside the loss). ``train_on``: "assistant" or "all".

    Each assistant reply ends with the tokenizer's EOS: appended if the template's end-of-turn is not EOS.
    """
    full, spans = assistant_spans(tokenizer, messages, template)
    eos = tokenizer.eos_token or ""
    pieces, cursor = [], 0
    for start, end in spans:  # rebuild the text, inserting EOS after replies whose span lacks it
        pieces.append(full[cursor:end])
        if eos and not full[start:end].endswith(eos):
            pieces.append(eos)
        cursor = end
    pieces.append(full[cursor:])
    text = "".join(pieces)
    spans = _shift_spans(spans, full, eos)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    if train_on == "all":
        return ids, list(ids)
    # a token is a target if it overlaps a reply (" Hello" may start on the space before the reply)
    labels = [t if any(a < e and b > s for s, e in spans) else -100 for t, (a, b) in zip(ids, enc["offset_mapping"])]
    return ids, labels


def _shift_spans(spans: list[tuple[int, int]], full: str, eos: str) -> list[tuple[int, int]]:
    """Spans in the text with EOS inserted after replies that lacked it (each insertion shifts later spans)."""
    out, shift = [], 0
    for start, end in spans:
        added = len(eos) if eos and not full[start:end].endswith(eos) else 0
        out.append((start + shift, end + shift + added))
        shift += added
    return out


def tokenize_text(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """Plain text for continued pretraining: every token (and a final EOS) is a target."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if tokenizer.bos_token_id is not None and getattr(tokenizer, "add_bos_token", False):
        ids = [tokenizer.bos_token_id] + ids
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids, list(ids)
