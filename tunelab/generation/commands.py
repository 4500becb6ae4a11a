"""The `generate` and `chat` subcommands: argument parsers and their functions (cli.py only dispatches)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tunelab.cliargs import add_threads_flag
from tunelab.errors import ConfigError, DataError

GEN_FLAGS = {  # flag -> (type, help); the keys of the `generation:` config section, spelled like transformers' arguments
    "max_new_tokens": (int, "most tokens to generate"),
    "do_sample": (bool, "sample instead of greedy/beam decoding"),
    "num_beams": (int, "beam search width"),
    "top_k": (int, "sample among the k most likely tokens"),
    "top_p": (float, "nucleus sampling probability mass"),
    "temperature": (float, "sampling temperature; above 0 turns sampling on, 0 means greedy (as in serve)"),
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
    add_threads_flag(p)


def _given(args) -> dict:
    """Decoding keys set on the command line, with the shared sampling rule applied (see config.decoding_update)."""
    from tunelab.generation.config import decoding_update

    given = {k: getattr(args, k) for k in list(GEN_FLAGS) + ["stop"] if getattr(args, k) is not None}
    try:
        return decoding_update(given)
    except ValueError as exc:
        raise ConfigError(f"--temperature: {exc}") from None


def _check_flags(args, log) -> dict:
    """Validate every decoding flag before any model loads (a bad value costs no loading time)."""
    from tunelab.generation import target
    from tunelab.generation.config import GenerationConfig, unused_sampling_keys

    given = _given(args)
    checked = target.with_overrides(GenerationConfig(), given)
    unused = unused_sampling_keys(checked, given) if "do_sample" in given else []
    if unused:
        log(
            f"note: --{unused[0].replace('_', '-')} has no effect without sampling (add --do-sample or --temperature T)"
        )
    return given


def _load_target(args, given: dict, log):
    from tunelab import hardware
    from tunelab.generation import target
    from tunelab.generation.config import unused_sampling_keys

    hardware.use_threads(args.threads)
    tgt = target.load(args.target)
    tgt.cfg = target.with_overrides(tgt.cfg, given)
    unused = unused_sampling_keys(tgt.cfg, given) if "do_sample" not in given else []
    if unused:
        log(
            f"note: --{unused[0].replace('_', '-')} has no effect: this run decodes greedily (add --do-sample or --temperature T)"
        )
    return tgt


def generate(args, log) -> int:
    from tunelab.generation.decode import generate as generate_outputs

    given = _check_flags(args, log)
    if args.input:
        prompts = _read_prompts(args.input)
    elif args.chat is not None:
        _non_empty("--chat", args.chat)
        prompts = [
            ([{"role": "system", "content": args.system}] if args.system else [])
            + [{"role": "user", "content": args.chat}]
        ]
    else:
        _non_empty("--prompt", args.prompt)
        prompts = [args.prompt]
    if args.output:
        _check_output(args.output)
    tgt = _load_target(args, given, log)
    outputs = generate_outputs(tgt.model, tgt.tokenizer, tgt.inputs(prompts), tgt.cfg, template=tgt.template, log=log)
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


def _non_empty(flag: str, text: str) -> None:
    if not text:
        raise ConfigError(f"{flag}: empty; give the text to {'continue' if flag == '--prompt' else 'send'}")


def _check_output(path: str) -> None:
    """--output must be writable before the model loads (a typo in a folder name costs no generation)."""
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"--output {path}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise ConfigError(f"--output {path}: folder {out.parent} does not exist")


def _read_prompts(path: str) -> list:
    """JSONL: each line {"prompt": TEXT} (raw continuation) or {"messages": [...]} (a chat)."""
    from tunelab.data.templates import to_messages

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
            if not obj["prompt"]:
                raise DataError(f'{path}:{n}: "prompt" is empty; give the text to continue')
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
    from tunelab.generation import chat as chat_mod

    given = _check_flags(args, log)
    return chat_mod.run(_load_target(args, given, log), args.system, log=log)


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
