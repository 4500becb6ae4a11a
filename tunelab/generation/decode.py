"""The generate loop: prompts (raw text) or chats (message lists) -> Outputs, batched with left padding.

Decoding itself is transformers' ``generate`` (sampling, beams, penalties, stop strings), except plain
greedy decoding, which runs the lighter loop in ``greedy.py`` (same tokens, less work per token).
Written here by hand: the sliding context window, finish reasons, cutting stop strings out of the
text, and a streamer that never shows a partial stop string.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Union

import torch

from tunelab.data import templates
from tunelab.errors import DataError
from tunelab.generation import greedy
from tunelab.generation.config import GenerationConfig

Prompt = Union[str, list]  # raw text to continue, or a list of {"role", "content"} messages


@dataclass
class Output:
    text: str  # generated text only (no prompt), stop string removed
    tokens: list[int]  # generated token ids, up to and including EOS
    finish_reason: str  # "eos" (end-of-sequence token), "stop" (a stop string) or "length" (max_new_tokens)
    dropped_messages: int = 0  # oldest messages left out to fit the context window


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def context_window(model, cfg: GenerationConfig) -> int:
    """Tokens the model may see (prompt + new tokens): the configured window or the model's own."""
    own = getattr(model.config, "max_position_embeddings", None) or 10**9
    return min(cfg.context_window or own, own)


def eos_ids(model, tokenizer) -> list[int]:
    ids = getattr(model.generation_config, "eos_token_id", None)
    ids = list(ids) if isinstance(ids, (list, tuple)) else [ids] if ids is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_prompt(
    tokenizer,
    prompt: Prompt,
    budget: int,
    template: str | None = None,
    log: Callable[[str], None] = _stderr,
    tools: list[dict] | None = None,
) -> tuple[list[int], int]:
    """Token ids of a prompt that fit ``budget`` tokens, and how many messages were dropped.

    A chat keeps its system message and the most recent turns, dropping the oldest messages (a
    leading assistant message goes with the user message before it). Raw text keeps its last tokens.
    ``tools`` (OpenAI function specs) are passed to the chat template.
    """
    if isinstance(prompt, str):
        ids = list(tokenizer(prompt)["input_ids"])
        if len(ids) > budget:
            log(f"context window: prompt of {len(ids)} tokens cut to its last {budget}")
            ids = ids[-budget:]
        return ids, 0
    template = template or templates.chat_template(tokenizer)
    msgs = list(prompt)
    system = msgs[:1] if msgs and msgs[0]["role"] == "system" else []
    turns = msgs[len(system) :]
    dropped = 0
    while True:
        ids = _chat_ids(tokenizer, system + turns, template, tools)
        if len(ids) <= budget or len(turns) <= 1:
            break
        turns = turns[1:]
        dropped += 1
        while len(turns) > 1 and turns[0]["role"] == "assistant":
            turns, dropped = turns[1:], dropped + 1
    if dropped:
        log(f"context window: dropped the {dropped} oldest message(s) to fit {budget} prompt tokens")
    if len(ids) > budget:
        log(f"context window: last message alone is {len(ids)} tokens; keeping its last {budget}")
        ids = ids[-budget:]
    return ids, dropped


def _chat_ids(tokenizer, messages: list[dict], template: str, tools: list[dict] | None = None) -> list[int]:
    text = templates.render(tokenizer, messages, template, add_generation_prompt=True, tools=tools)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask  # (batch, width) each


def _right_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    return ids, mask  # (batch, width) each


def hf_generate_kwargs(model, tokenizer, cfg: GenerationConfig) -> dict:
    kw = cfg.hf_kwargs()
    kw.update(eos_token_id=eos_ids(model, tokenizer), pad_token_id=tokenizer.pad_token_id)
    if cfg.stop:  # transformers stops on them; the text is cut below
        kw.update(stop_strings=list(cfg.stop), tokenizer=tokenizer)
    return kw


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[Prompt],
    cfg: GenerationConfig | None = None,
    *,
    template: str | None = None,
    log: Callable[[str], None] = _stderr,
) -> list[Output]:
    """Generate a continuation for each prompt (raw text or message list), in input order."""
    cfg = cfg or GenerationConfig()
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
    budget = max(1, context_window(model, cfg) - cfg.max_new_tokens)
    encoded = [encode_prompt(tokenizer, p, budget, template, log) for p in prompts]
    _check_not_empty([ids for ids, _ in encoded])
    device = next(model.parameters()).device
    kw = hf_generate_kwargs(model, tokenizer, cfg)
    stops = set(kw["eos_token_id"])
    was_training = model.training
    model.eval()
    outputs: list[Output] = []
    for s in range(0, len(encoded), cfg.batch_size):
        chunk = encoded[s : s + cfg.batch_size]
        new = _new_tokens(model, [c[0] for c in chunk], cfg, kw, tokenizer.pad_token_id, device)
        for row, (_, dropped) in zip(new.tolist(), chunk):
            outputs.append(finish(tokenizer, row, stops, cfg.stop, dropped))
    model.train(was_training)
    return outputs


def _new_tokens(model, rows: list[list[int]], cfg: GenerationConfig, kw: dict, pad_id: int, device) -> torch.Tensor:
    """(batch, new) generated ids for a batch of prompt ids. A decoder continues its left-padded prompts; an
    encoder-decoder reads them as encoder inputs (right-padded, so absolute positions stay put) and its output
    starts after the decoder's start token."""
    if model.config.is_encoder_decoder:
        ids, mask = _right_pad(rows, pad_id, device)
        return model.generate(input_ids=ids, attention_mask=mask, **kw)[:, 1:]
    ids, mask = _left_pad(rows, pad_id, device)
    if greedy.supports(model, cfg):
        return greedy.greedy(model, ids, mask, cfg.max_new_tokens, kw["eos_token_id"], pad_id)  # (batch, steps)
    return model.generate(input_ids=ids, attention_mask=mask, **kw)[:, ids.shape[1] :]  # (batch, new)


def finish(tokenizer, new_ids: list[int], stop_ids: set[int], stop_strings: list[str], dropped: int = 0) -> Output:
    """Cut generated ids at the first EOS and the text at the first stop string; name why it ended."""
    reason = "length"
    for i, t in enumerate(new_ids):
        if t in stop_ids:
            new_ids, reason = new_ids[: i + 1], "eos"
            break
    text = tokenizer.decode(new_ids, skip_special_tokens=True)
    cut = min((text.find(s) for s in stop_strings if s and s in text), default=-1)
    if cut >= 0:
        text, reason = text[:cut], "stop"
    return Output(text, new_ids, reason, dropped)


def stream(
    model,
    tokenizer,
    prompt: Prompt,
    cfg: GenerationConfig | None = None,
    *,
    template: str | None = None,
    log: Callable[[str], None] = _stderr,
) -> Iterator[str]:
    """Yield the generated text piece by piece as tokens are produced (one prompt; runs generate in a thread).

    Closing the generator early (``close()``, or an exception such as Ctrl-C's KeyboardInterrupt while it
    waits) stops the generating thread at its next token and waits for it, so no thread outlives the reply.
    """
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    cfg = cfg or GenerationConfig()
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
    budget = max(1, context_window(model, cfg) - cfg.max_new_tokens)
    ids, _ = encode_prompt(tokenizer, prompt, budget, template, log)
    _check_not_empty([ids])
    device = next(model.parameters()).device
    input_ids, mask = _left_pad([ids], tokenizer.pad_token_id, device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    stop = StopFlag()
    kw = hf_generate_kwargs(model, tokenizer, cfg)
    kw["stopping_criteria"] = StoppingCriteriaList([stop])
    model.eval()
    worker = threading.Thread(target=_generate_quietly, args=(model, input_ids, mask, streamer, kw), daemon=True)
    worker.start()
    try:
        yield from hold_back_stops(streamer, cfg.stop)
    finally:
        stop.set()
        join_uninterrupted(worker)


class StopFlag:
    """A transformers stopping criterion that ends every row once ``set()`` is called (from any thread)."""

    def __init__(self):
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool, device=input_ids.device)


def join_uninterrupted(thread: threading.Thread) -> None:
    """Wait for ``thread`` even through further Ctrl-C presses: it is told to stop and ends within one token.

    Leaving it running would let the interpreter exit under a thread that is inside torch (SIGABRT).
    """
    while thread.is_alive():
        try:
            thread.join()
        except KeyboardInterrupt:
            continue


def _check_not_empty(rows: list[list[int]]) -> None:
    for i, ids in enumerate(rows):
        if not ids:
            raise DataError(f"prompt {i + 1}: empty (no tokens to continue); give some text")


def _generate_quietly(model, input_ids, mask, streamer, kw) -> None:
    try:
        with torch.no_grad():
            model.generate(input_ids=input_ids, attention_mask=mask, streamer=streamer, **kw)
    except BaseException:  # the reader must not wait forever for pieces that will never come
        streamer.end()
        raise


def hold_back_stops(pieces, stop_strings: list[str]) -> Iterator[str]:
    """Pass text pieces through, ending before the first stop string and never yielding part of one."""
    keep = max((len(s) for s in stop_strings), default=1) - 1
    buf = ""
    for piece in pieces:
        buf += piece
        hits = [buf.find(s) for s in stop_strings if s and s in buf]
        if hits:
            if min(hits):
                yield buf[: min(hits)]
            for _ in pieces:  # drain so the generating thread can finish
                pass
            return
        if len(buf) > keep:
            yield buf[: len(buf) - keep]
            buf = buf[len(buf) - keep :]
    if buf:
        yield buf
