"""Structured output for the server: JSON (``response_format``) enforced token by token, and tool calls.

Constrained decoding uses lm-format-enforcer's character-level JSON-schema parser and its token enforcer (a
prefix tree of the vocabulary walked against the parser: at each step only tokens that keep the text a valid
prefix of a schema-conforming document are allowed; once the document is complete only end-of-sequence is).
Its transformers integration does not import under transformers 5, so the tokenizer table it needs is built here
(``token_table``) from the tokenizer alone, once per tokenizer. Tools: when the chat template knows ``tools`` it
renders them itself; otherwise a system message describes them and asks for ``<tool_call>{...}</tool_call>``
(the Hermes/Qwen convention); replies are parsed back into OpenAI ``tool_calls``. ``tool_choice`` "required" or a
named function constrains the reply to a JSON call of the allowed function(s), so it always parses.
"""

from __future__ import annotations

import json
import re
import uuid

import torch

from tunelab.serve.schemas import APIError


def token_table(served, eos: list[int]):
    """lm-format-enforcer's table of (id, text, starts a word) for every regular token of a served model's
    tokenizer, built on first use (~2 s for a 49k vocabulary) and kept on the model (adapters share it)."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    tokenizer = served.tokenizer
    with served.lock:
        if served.token_table is not None:
            return served.token_table
        special = set(tokenizer.all_special_ids)
        zero = tokenizer.encode("0", add_special_tokens=False)[-1]
        rows = []
        for i in range(len(tokenizer)):
            if i in special:
                continue
            # decoding after a "0" keeps the leading space a word-start token carries
            after = tokenizer.decode([zero, i])[1:]
            if "\ufffd" in after:  # a piece of a multi-byte character: the parser could never see it complete
                continue
            rows.append((i, after, len(after) > len(tokenizer.decode([i]))))

        def decode(ids: list[int]) -> str:
            return tokenizer.decode(ids).rstrip("\ufffd")

        table = TokenEnforcerTokenizerData(rows, decode, eos, False, len(tokenizer))
        table.texts = {i: text for i, text, _ in rows}  # the characters each token adds (JsonConstraint._fits)
        served.token_table = table
        return table


MAX_WHITESPACE = 6


class JsonConstraint:
    """One row's constraint: ``pick`` chooses among the allowed tokens, ``advance`` records the choice."""

    def __init__(self, table, schema: dict | None):
        from lmformatenforcer import CharacterLevelParserConfig, JsonSchemaParser, TokenEnforcer

        # whitespace between tokens is bounded (6 covers pretty-printed JSON two levels deep), so a model that
        # favours whitespace still reaches the end of the document
        parser = JsonSchemaParser(schema)
        self.enforcer = TokenEnforcer(table, parser)
        # TokenEnforcer replaces the parser's config with one holding the vocabulary's alphabet: extend that one
        parser.config = CharacterLevelParserConfig(
            alphabet=parser.config.alphabet, max_consecutive_whitespaces=MAX_WHITESPACE
        )
        self.texts = table.texts
        self.seq: list[int] = []
        self.done = False

    def pick(self, logits: torch.Tensor, choose) -> int:
        """The token ``choose`` picks among the allowed ones of (vocab,) logits.

        The enforcer's token mask is a fast approximation (its string shortcut can let a string run one character
        past maxLength), so the chosen token is also walked through the parser character by character; a token
        the parser refuses is masked and the choice made again."""
        allowed = self.enforcer.get_allowed_tokens(self.seq).allowed_tokens  # a list of ids (no bitmask)
        keep = torch.full_like(logits, float("-inf"))
        idx = torch.tensor(allowed, dtype=torch.long)
        keep[idx] = logits[idx]
        parser = self.enforcer.prefix_states[tuple(self.seq)].parser
        for _ in range(len(allowed)):
            token = choose(keep)
            if self._fits(parser, token):
                return token
            keep[token] = float("-inf")
        return token

    def _fits(self, parser, token: int) -> bool:
        text = self.texts.get(token)
        if text is None:  # end of sequence (or a special token): only where the document may end
            return parser.can_end()
        for ch in text:
            if ch not in parser.get_allowed_characters() or not _string_ok(parser, ch):
                return False
            parser = parser.add_character(ch)
        return True

    def advance(self, token: int) -> None:
        self.seq.append(token)


def _string_ok(parser, ch: str) -> bool:
    """Whether ``ch`` may come next inside a JSON string, for what the parser's alphabet lets through: JSON
    forbids raw control characters in strings, and lm-format-enforcer 0.11 drops whitespace right after the
    opening quote without counting it (a string could then pass its maxLength), so strings do not start with it."""
    from lmformatenforcer.jsonschemaparser import StringParsingState

    top = parser.object_stack[-1] if getattr(parser, "object_stack", None) else None
    if not (isinstance(top, StringParsingState) and top.seen_opening_quote and not top.seen_closing_quote):
        return True
    return ord(ch) >= 0x20 and not (ch == " " and not top.parsed_string)


def schema_of(response_format: dict | None) -> tuple[bool, dict | None]:
    """(constrained?, JSON schema or None for any JSON object) of an OpenAI ``response_format``; 400 if malformed."""
    if response_format is None or response_format.get("type") == "text":
        return False, None
    kind = response_format.get("type")
    if kind == "json_object":
        return True, {"type": "object"}
    if kind != "json_schema":
        raise APIError(
            400,
            f"response_format.type: '{kind}' is not one of text, json_object, json_schema",
            param="response_format.type",
            code="invalid_value",
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise APIError(
            400,
            "response_format.json_schema.schema: needs a JSON schema object",
            param="response_format.json_schema",
            code="invalid_value",
        )
    check_schema(spec["schema"], "response_format.json_schema.schema")
    return True, spec["schema"]


def check_schema(schema: dict, where: str) -> None:
    """400 naming ``where`` when ``schema`` is not a valid JSON schema or uses what the enforcer cannot follow."""
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise APIError(400, f"{where}: not a valid JSON schema ({exc.message})", param=where, code="invalid_value")
    try:
        from lmformatenforcer import JsonSchemaParser

        JsonSchemaParser(schema)
    except Exception as exc:  # noqa: BLE001 - the parser's own message says which construct
        raise APIError(
            400, f"{where}: cannot be enforced ({type(exc).__name__}: {exc})", param=where, code="unsupported_schema"
        ) from None


# ---------------------------------------------------------------- tools


def tool_schema(tools: list[dict], choice) -> dict | None:
    """The JSON schema a reply must follow for ``tool_choice`` (None: free text, tools optional)."""
    names = [t["function"]["name"] for t in tools]
    if choice in (None, "auto", "none"):
        return None
    if isinstance(choice, dict):
        names = [choice["function"]["name"]]
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [t["function"]["name"]]},
                "arguments": t["function"].get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for t in tools
        if t["function"]["name"] in names
    ]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


def offer_tools(messages: list[dict], tools: list[dict], template: str | None) -> tuple[list[list[dict]], list | None]:
    """([messages], tools for the template): a template that renders ``tools`` gets them; otherwise the system
    message (added if absent) describes them and asks for <tool_call> blocks."""
    from tunelab.data import templates

    if template is not None and templates.knows_tools(template):
        return [messages], tools
    specs = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools)
    text = (
        f"You can call these functions:\n{specs}\nTo call one, reply with "
        '<tool_call>{"name": <function name>, "arguments": <arguments object>}</tool_call>.'
    )
    if messages and messages[0]["role"] == "system":
        return [[{"role": "system", "content": messages[0]["content"] + "\n\n" + text}, *messages[1:]]], None
    return [[{"role": "system", "content": text}, *messages]], None


_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


def parse_tool_calls(text: str, tools: list[dict]) -> list[dict]:
    """OpenAI ``tool_calls`` found in a reply: <tool_call> blocks, or a reply that is one JSON call."""
    names = {t["function"]["name"] for t in tools}
    bodies = _CALL.findall(text) or [text.strip()]
    calls = []
    for body in bodies:
        try:
            obj = json.loads(body)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("name") in names and isinstance(obj.get("arguments", {}), dict):
            calls.append(
                {
                    "id": "call_" + uuid.uuid4().hex[:24],
                    "type": "function",
                    "function": {"name": obj["name"], "arguments": json.dumps(obj.get("arguments", {}))},
                }
            )
    return calls
