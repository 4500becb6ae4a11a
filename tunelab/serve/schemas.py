"""Request bodies (strict pydantic models) and OpenAI's error format.

Unknown fields are a 400 naming the field. Fields OpenAI clients send that change nothing here
(``user``, ``metadata``, ``store``, ``service_tier``...) are accepted and ignored; fields that would
change the answer in a way this server does not implement (``echo``, ``logit_bias``, ``best_of`` > n,
``suffix``, ``functions``/``function_call``, ``parallel_tool_calls`` false) are accepted only at their neutral
value and otherwise rejected with a 400 that says so. ``top_k`` and ``repetition_penalty`` are extensions.
Per-token features (logprobs, penalties, response_format, tools) need the continuous scheduler; app.py answers
400 for a model served on the static path.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class APIError(Exception):
    """An error answered in OpenAI's format: {"error": {"message", "type", "param", "code"}}."""

    TYPES = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "invalid_request_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
        500: "server_error",
        504: "timeout_error",
    }

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None, headers: dict | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers or {}

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # accepted and ignored: they do not change what is generated
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


Stop = Union[str, list[str], None]


class _Generate(_Body):
    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=100_000)
    repetition_penalty: float | None = Field(None, gt=0, le=100)
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop strings")
        if any(not s or len(s) > 256 for s in stops):
            raise ValueError("each stop string must be 1-256 characters")
        return stops

    @model_validator(mode="after")
    def _unsupported(self):
        if self.logit_bias:
            raise ValueError("logit_bias: not supported by this server")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed with stream=true")
        return self


class CompletionRequest(_Generate):
    prompt: Union[str, list[str]]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        prompts = [v] if isinstance(v, str) else v
        if not prompts:
            raise ValueError("needs at least one prompt")
        empty = [i for i, p in enumerate(prompts) if not p]
        if empty:  # a string and a list are treated alike: every prompt needs text
            where = "" if isinstance(v, str) else f" (index {empty[0]})"
            raise ValueError(f"empty prompt{where}; every prompt needs some text to continue")
        return prompts

    @model_validator(mode="after")
    def _neutral(self):
        if self.echo:
            raise ValueError("echo: not supported by this server")
        if self.best_of is not None and self.best_of != self.n:
            raise ValueError("best_of: only best_of == n is supported")
        if self.suffix:
            raise ValueError("suffix: not supported by this server")
        return self


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[TextPart], None] = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content(self):
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content: required (only an assistant message with tool_calls may omit it)")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool_call_id: required in a tool message")
        return self

    def text(self) -> str:
        if self.content is None:  # an assistant turn that called tools: shown as the calls it made
            return "\n".join(
                "<tool_call>"
                + json.dumps({"name": c.function.name, "arguments": json.loads(c.function.arguments or "{}")})
                + "</tool_call>"
                for c in self.tool_calls
            )
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: FunctionDef


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatRequest(_Generate):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Union[Literal["none", "auto", "required"], dict[str, Any], None] = None
    functions: list[Any] | None = None
    function_call: Any = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _neutral(self):
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs: needs logprobs=true")
        for name in ("functions", "function_call"):
            if getattr(self, name) not in (None, [], "none"):
                raise ValueError(f"{name}: the deprecated functions API is not supported; use tools and tool_choice")
        if self.parallel_tool_calls is False:
            raise ValueError("parallel_tool_calls: only true (the default) is supported")
        if self.tool_choice not in (None, "none") and not self.tools:
            raise ValueError("tool_choice: needs tools")
        if isinstance(self.tool_choice, dict):
            name = (self.tool_choice.get("function") or {}).get("name")
            if self.tool_choice.get("type") != "function" or name not in [t.function.name for t in self.tools]:
                raise ValueError("tool_choice: must name one of the given tools as {type: function, function: {name}}")
        if self.tools and self.response_format is not None and self.response_format.type != "text":
            raise ValueError("response_format: cannot be combined with tools")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("max_completion_tokens: give max_tokens or max_completion_tokens, not both")
        return self

    def chat(self) -> list[dict]:
        """Messages for the chat template (``developer`` is OpenAI's new name for ``system``)."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]

    def tool_dicts(self) -> list[dict]:
        """The tools offered to the model (none when tool_choice is "none")."""
        if not self.tools or self.tool_choice == "none":
            return []
        return [t.model_dump(exclude_none=True) for t in self.tools]


class PredictRequest(_Body):
    model: str = Field(min_length=1, max_length=256)
    input: Union[str, list[str]]
    text_pair: Union[str, list[str], None] = None

    @model_validator(mode="after")
    def _shape(self):
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts or any(not t.strip() for t in texts):
            raise ValueError("input: needs one or more non-empty texts")
        if self.text_pair is not None:
            pairs = [self.text_pair] if isinstance(self.text_pair, str) else self.text_pair
            if len(pairs) != len(texts):
                raise ValueError(f"text_pair: needs one text per input ({len(texts)}), got {len(pairs)}")
        return self


class EmbeddingRequest(_Body):
    model: str = Field(min_length=1, max_length=256)
    input: Union[str, list[str], list[int], list[list[int]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None

    @model_validator(mode="after")
    def _shape(self):
        if self.dimensions is not None:
            raise ValueError("dimensions: not supported (vectors have the model's hidden size)")
        items = [self.input] if isinstance(self.input, str) else self.input
        if not items or (isinstance(self.input, list) and isinstance(items[0], int)):
            items = [items]  # one text as token ids
        if not items or any(len(x) == 0 or (isinstance(x, str) and not x.strip()) for x in items):
            raise ValueError("input: needs one or more non-empty texts (or token id lists)")
        return self

    def items(self) -> list:
        """Each input: a text or a list of token ids."""
        if isinstance(self.input, str):
            return [self.input]
        return [self.input] if isinstance(self.input[0], int) else list(self.input)


def validation_error(exc) -> APIError:
    """The first pydantic error as a 400 whose message and ``param`` name the field."""
    err = exc.errors()[0]
    loc = ".".join(
        str(p) for p in err["loc"] if not isinstance(p, str) or not p.startswith(("function-", "union[", "list["))
    )
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return APIError(400, f"{loc}: unknown or unsupported field", param=loc, code="unknown_field")
    if not loc and ":" in msg:  # model-level check: "field: why"
        loc = msg.split(":", 1)[0]
        return APIError(
            400, msg, param=loc, code="unsupported_parameter" if "not supported" in msg else "invalid_value"
        )
    return APIError(400, f"{loc}: {msg}", param=loc or None, code="invalid_value")
