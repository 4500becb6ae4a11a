"""The `generate` and `chat` subcommands: argument parsers and their functions (cli.py only dispatches)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tunelab.generation import chat as chat_mod
from tunelab.generation.generate import generate as generate_outputs

GEN_FLAGS = {  # flag -> (type, help); the keys of the `generation:` config section, spelled like transformers' arguments
    "max_new_tokens": (int, "most tokens to generate"),
    "do_sample": (bool, "sample instead of greedy/beam decoding"),
    "num_beams": (int, "beam search width"),
    "top_k": (int, "sample among the k most likely tokens"),
    "top_p": (float, "nucleus sampling probability mass"),
    "temperature": (float, "sampling temperature"),
    "repetition_penalty": (float, "penalise tokens already present (>1)"),
    "no_repeat_ngram_size": (int, "never repeat n-grams of this size"),
    "length_penalty": (float, "beam search length exponent"),
    "early_stopping": (bool, "beam search: stop at num_beams finished candidates"),
    "seed": (int, "sampling seed"),
    "context_window": (int, "tokens of context (prompt + new tokens)"),
    "batch_size": (int, "prompts per generate call"),
}


def _add_flags(p) -> None:
    for key, (typ, text) in GEN_FLAGS.items():
        flag = "--" + key.replace("_", "-")
        if typ is bool:
            p.add_argument(flag, dest=key, action="store_true", default=None, help=text)
        else:
            p.add_argument(flag, dest=key, type=typ, default=None, help=text)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable); removed from the output")


def _load_target(args):
    from tunelab.generation import target

    tgt = target.load(args.target)
    given = {k: getattr(args, k) for k in list(GEN_FLAGS) + ["stop"] if getattr(args, k) is not None}
    tgt.cfg = target.with_overrides(tgt.cfg, given)
    return tgt


def generate(args, log) -> int:
    tgt = _load_target(args)
    if args.input:
        prompts = _read_prompts(args.input)
    elif args.chat is not None:
        prompts = [
            ([{"role": "system", "content": args.system}] if args.system else [])
            + [{"role": "user", "content": args.chat}]
        ]
    else:
        prompts = [args.prompt]
    outputs = generate_outputs(tgt.model, tgt.tokenizer, prompts, tgt.cfg, template=tgt.template, log=log)
    if not args.input:
        sys.stdout.write(outputs[0].text + "\n")
        return 0
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    for o in outputs:
        out.write(
            json.dumps(
                {"text": o.text, "finish_reason": o.finish_reason, "new_tokens": len(o.tokens)}, ensure_ascii=False
            )
            + "\n"
        )
    if args.output:
        out.close()
    return 0


def _read_prompts(path: str) -> list:
    """JSONL: each line {"prompt": TEXT} (raw continuation) or {"messages": [...]} (a chat)."""
    from tunelab.data.templates import to_messages
    from tunelab.errors import DataError

    prompts = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
            prompts.append(obj["prompt"])
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
            msgs = obj["messages"] + (
                [{"role": "assistant", "content": ""}]
                if obj["messages"][-1:] and obj["messages"][-1].get("role") != "assistant"
                else []
            )
            try:
                prompts.append(to_messages({"messages": msgs})[:-1])
            except DataError as exc:
                raise DataError(f"{path}:{n}: {exc}") from None
        else:
            raise DataError(f'{path}:{n}: expected {{"prompt": TEXT}} or {{"messages": [{{"role", "content"}}, ...]}}')
    if not prompts:
        raise DataError(f"{path}: no prompts")
    return prompts


def chat(args, log) -> int:
    return chat_mod.run(_load_target(args), args.system, log=log)


def add_parsers(sub) -> None:
    p = sub.add_parser("generate", help="generate text from a run folder or a model (stdout: only the generated text)")
    p.add_argument("target", help="run folder (RUN_DIR) or model name/alias/path (MODEL)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--prompt", help="raw text to continue")
    group.add_argument("--chat", help="send as a user message through the chat template")
    group.add_argument("--input", help='JSONL file, one {"prompt": ...} or {"messages": [...]} per line; writes JSONL')
    p.add_argument("--system", help="system prompt for --chat")
    p.add_argument("--output", help="output JSONL for --input (default stdout)")
    _add_flags(p)
    p = sub.add_parser("chat", help="interactive multi-turn chat that streams replies")
    p.add_argument("target", help="run folder (RUN_DIR) or model name/alias/path (MODEL)")
    p.add_argument("--system", help="system prompt")
    _add_flags(p)
