"""OpenAI's response and stream-chunk shapes, and the server-sent-event stream.

Finish reasons map as OpenAI's: EOS or a stop string -> "stop", max_tokens -> "length".
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from tunelab.serve.schemas import APIError

FINISH = {"eos": "stop", "stop": "stop", "length": "length"}


def model_card(served) -> dict:
    return {"id": served.name, "object": "model", "created": served.created, "owned_by": "tunelab"}


@dataclass
class Reply:
    id: str
    model: str
    chat: bool
    n: int
    prompt_tokens: int
    created: int = field(default_factory=lambda: int(time.time()))
    logprobs: bool = False  # the request asked for logprobs
    tools: list = field(default_factory=list)  # tools offered: replies are parsed for tool calls

    def usage(self, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def full(self, outputs: list[list]) -> dict:
        """The non-streamed response; ``outputs[j][i]`` is choice i of prompt j."""
        choices, used = [], 0
        for j, outs in enumerate(outputs):
            for i, o in enumerate(outs):
                index, used = j * self.n + i, used + len(o.tokens)
                lps = self._logprobs(o.logprobs if self.logprobs else None)
                if self.chat:
                    message, finish = self.message(o)
                    choices.append({"index": index, "message": message, "logprobs": lps, "finish_reason": finish})
                else:
                    choices.append(
                        {"index": index, "text": o.text, "logprobs": lps, "finish_reason": FINISH[o.finish_reason]}
                    )
        obj = "chat.completion" if self.chat else "text_completion"
        return {**self._head(obj), "choices": choices, "usage": self.usage(used)}

    def message(self, o) -> tuple[dict, str]:
        """The assistant message of a finished choice and its finish reason ("tool_calls" when it called tools)."""
        from tunelab.serve.structured import parse_tool_calls

        calls = parse_tool_calls(o.text, self.tools) if self.tools else []
        if calls:
            return {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
        return {"role": "assistant", "content": o.text}, FINISH[o.finish_reason]

    def whole(self, index: int, o) -> str:
        """The one content chunk of a choice that was held back to be parsed (tools offered); its finish chunk."""
        message, finish = self.message(o)
        delta = {k: v for k, v in message.items() if k != "role" and v is not None}
        for i, call in enumerate(delta.get("tool_calls", [])):
            call["index"] = i
        lps = self._logprobs(o.logprobs if self.logprobs else None)
        choice = {"index": index, "delta": delta, "logprobs": lps, "finish_reason": None}
        body = {**self._head("chat.completion.chunk"), "choices": [choice]}
        return _event(body) + self.chunk(index, finish=finish)

    def _logprobs(self, entries: list[dict] | None) -> dict | None:
        """Chat: {"content": [entries]}; completions: OpenAI's legacy parallel lists."""
        if entries is None:
            return None
        if self.chat:
            return {"content": entries}
        offsets, at = [], 0
        for e in entries:
            offsets.append(at)
            at += len(e["token"])
        return {
            "tokens": [e["token"] for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
            "text_offset": offsets,
        }

    def chunk(
        self,
        index: int,
        text: str | None = None,
        finish: str | None = None,
        role: bool = False,
        logprobs: list[dict] | None = None,
    ) -> str:
        lps = self._logprobs(logprobs if self.logprobs and text is not None else None)
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else {} if text is None else {"content": text}
            choice = {"index": index, "delta": delta, "logprobs": lps, "finish_reason": finish}
            body = {**self._head("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": index, "text": text or "", "logprobs": lps, "finish_reason": finish}
            body = {**self._head("text_completion"), "choices": [choice]}
        return _event(body)

    def usage_chunk(self, completion_tokens: int) -> str:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return _event({**self._head(obj), "choices": [], "usage": self.usage(completion_tokens)})


def _event(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def sse(reply: Reply, jobs: list, events: asyncio.Queue, deadline: float, request, include_usage: bool):
    """Chunks as the worker sends them, a final chunk per choice with its finish reason, then [DONE].

    A client that goes away cancels its jobs (the worker stops them at the next token), as does the
    deadline, which ends the stream with an error event."""
    done, used = 0, 0
    try:
        if reply.chat:
            for index in range(len(jobs) * reply.n):
                yield reply.chunk(index, role=True)
        while done < len(jobs):
            left = deadline - time.monotonic()
            if left <= 0:
                yield _event(
                    APIError(
                        504, "the request took longer than the server's timeout; generation was stopped", code="timeout"
                    ).body()
                )
                break
            try:
                j, kind, payload = await asyncio.wait_for(events.get(), min(left, 0.5))
            except (asyncio.TimeoutError, TimeoutError):
                if await request.is_disconnected():
                    return
                continue
            if kind == "delta":
                index, text, entries = payload
                yield reply.chunk(j * reply.n + index, text, logprobs=entries or [])
            elif kind == "done":
                done += 1
                for i, o in enumerate(payload):
                    used += len(o.tokens)
                    if reply.tools:
                        yield reply.whole(j * reply.n + i, o)
                    else:
                        yield reply.chunk(j * reply.n + i, finish=FINISH[o.finish_reason])
            else:
                yield _event(APIError(500, f"generation failed: {payload}", code="generation_failed").body())
                break
        if include_usage:
            yield reply.usage_chunk(used)
        yield "data: [DONE]\n\n"
    finally:
        for job in jobs:
            job.cancel.set()  # client gone or stream over: unfinished rows stop at their next token
