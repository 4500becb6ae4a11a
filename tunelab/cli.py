"""The `tunelab` command: a table of subcommands, each a plain function of parsed arguments."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tunelab.errors import TunelabError


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_train(args) -> int:
    from tunelab import config
    from tunelab.recipes import finetune

    path, overrides = _split_config_args(args.config)
    cfg = config.load(path, overrides)
    final = finetune.run(cfg, quiet=args.quiet, log=_log)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in final["dev"].items() if isinstance(v, float))
    _log(f"done: dev {shown}; run folder {cfg.output_dir}")
    return 0


def _split_config_args(items: list[str]) -> tuple[str | None, list[str]]:
    """`tunelab train [CONFIG] [key=value ...]`: the first item is the YAML file unless it is an override."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


def cmd_config(args) -> int:
    from tunelab import config

    if args.markdown:
        print("| key | default | description |\n|---|---|---|")
        print("\n".join(f"| `{k.split()[0]}` {' '.join(k.split()[1:])} | {v or ''} | {d} |" for k, v, d in config.describe()))
    else:
        print(config_help(config))
    return 0


def config_help(config) -> str:
    rows = config.describe()
    width = max(len(k) for k, _, _ in rows)
    return "\n".join(f"  {k:<{width}}  {d}" + (f" [default: {v}]" if v else "") for k, v, d in rows)


def cmd_eval(args) -> int:
    from tunelab import runs
    from tunelab.data.collate import pad_batch
    from tunelab.tasks import TASKS

    loaded = runs.load_run(args.run_dir)
    task = TASKS[loaded.cfg.task]
    table = task.read(loaded.cfg.data, args.data)
    feats = task.encode(table.rows, loaded.tokenizer, loaded.labels, loaded.cfg.model.max_length, source=args.data)
    collate = lambda b: pad_batch(b, loaded.tokenizer.pad_token_id)  # noqa: E731
    metrics = task.evaluate(loaded.model, feats, loaded.labels, collate)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_predict(args) -> int:
    from tunelab import runs
    from tunelab.tasks import TASKS

    loaded = runs.load_run(args.run_dir)
    task = TASKS[loaded.cfg.task]
    rows = task.read(loaded.cfg.data, args.data, with_labels=False).rows if args.data else _stdin_rows()
    for row, out in zip(rows, task.predict(loaded.model, loaded.tokenizer, loaded.labels, rows, loaded.cfg.model.max_length)):
        print(json.dumps({"text": row.text, **out}, ensure_ascii=False))
    return 0


def _stdin_rows():
    """Each stdin line is a text, or a JSON object with "text" (and optional "text_pair")."""
    from tunelab.data.sources import Row

    rows = []
    for n, line in enumerate(sys.stdin, start=1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TunelabError(f"<stdin>:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj.get("text"), str) or not obj["text"].strip():
                raise TunelabError(f"<stdin>:{n}: JSON input needs a non-empty \"text\" string")
            rows.append(Row(obj["text"], obj.get("text_pair"), None, n))
        else:
            rows.append(Row(line, None, None, n))
    return rows


def cmd_info(args) -> int:
    from tunelab import config
    from tunelab.methods import METHODS
    from tunelab.methods.base import count_parameters, find_layers
    from tunelab.models import load as model_load
    from tunelab.tasks import TASKS

    overrides = [f"model.name={args.model}", f"method.name={args.method}"] + list(args.set or [])
    cfg = config.load(None, overrides)
    task = TASKS[cfg.task]
    src = model_load.resolve(cfg.model.name, cfg.model.gguf_file, cfg.model.revision)
    model, head = model_load.load_model(src, task.AUTO_CLASS, **task.model_kwargs([str(i) for i in range(args.num_labels)]))
    _, layers = find_layers(model)
    total_before = count_parameters(model)[1]
    model = METHODS[cfg.method.name].apply(model, cfg.method, head)
    trainable, total = count_parameters(model)
    info = {"model": args.model, "architecture": type(model.base_model if hasattr(model, "base_model") else model).__name__,
            "layers": len(layers), "parameters": total_before, "method": cfg.method.name, "task_head": head,
            "trainable_parameters": trainable, "trainable_percent": round(100 * trainable / total, 4)}
    print(json.dumps(info, indent=2))
    return 0


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


def _add_gen_flags(p) -> None:
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


def cmd_generate(args) -> int:
    from tunelab.generation import generate

    tgt = _load_target(args)
    if args.input:
        prompts = _read_prompts(args.input)
    elif args.chat is not None:
        prompts = [([{"role": "system", "content": args.system}] if args.system else []) + [{"role": "user", "content": args.chat}]]
    else:
        prompts = [args.prompt]
    outputs = generate(tgt.model, tgt.tokenizer, prompts, tgt.cfg, template=tgt.template, log=_log)
    if not args.input:
        sys.stdout.write(outputs[0].text + "\n")
        return 0
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    for o in outputs:
        out.write(json.dumps({"text": o.text, "finish_reason": o.finish_reason, "new_tokens": len(o.tokens)}, ensure_ascii=False) + "\n")
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
            msgs = obj["messages"] + ([{"role": "assistant", "content": ""}] if obj["messages"][-1:] and obj["messages"][-1].get("role") != "assistant" else [])
            try:
                prompts.append(to_messages({"messages": msgs})[:-1])
            except DataError as exc:
                raise DataError(f"{path}:{n}: {exc}") from None
        else:
            raise DataError(f'{path}:{n}: expected {{"prompt": TEXT}} or {{"messages": [{{"role", "content"}}, ...]}}')
    if not prompts:
        raise DataError(f"{path}: no prompts")
    return prompts


def cmd_chat(args) -> int:
    from tunelab.generation import chat

    return chat.run(_load_target(args), args.system, log=_log)


def cmd_serve(args) -> int:
    from tunelab.serve import app

    return app.run(args)


def _add_serve_parser(sub) -> None:
    from tunelab.serve.config import ServeConfig

    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server for runs and models (127.0.0.1 by default)")
    p.add_argument("targets", nargs="+", metavar="RUN_DIR|MODEL|NAME=RUN_DIR",
                   help="run folders or models to serve; each is served under its folder name, or NAME")
    p.add_argument("--config", help="YAML file with a `serve:` section (flags override it)")
    p.add_argument("--api-key", action="append", help="require this key (repeatable; also env TUNELAB_API_KEYS, comma-separated)")
    for key, field in ServeConfig.model_fields.items():
        typ = {int: int, float: float}.get(field.annotation, int if "int" in str(field.annotation) else str)
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=typ, default=None,
                       help=f"{field.description} [default: {field.default}]")


COMMANDS = {
    "serve": cmd_serve,
    "generate": cmd_generate,
    "chat": cmd_chat,
    "train": cmd_train,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "info": cmd_info,
    "config": cmd_config,
}


def build_parser() -> argparse.ArgumentParser:
    from tunelab import config

    parser = argparse.ArgumentParser(prog="tunelab", description="Fine-tune pretrained language models on your own task.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="fine-tune a model", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="tunelab train CONFIG.yaml [key.path=value ...]\n\nconfig keys:\n" + config_help(config))
    p.add_argument("config", nargs="*", help="YAML config file, then overrides like train.lr=3e-5")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = sub.add_parser("eval", help="evaluate a run on a labelled file")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="labelled file in the run's data format")
    p = sub.add_parser("predict", help="predict labels for a file or stdin, as JSONL")
    p.add_argument("run_dir")
    p.add_argument("--data", help="input file (the run's text column); default: stdin, one text or JSON object per line")
    p = sub.add_parser("info", help="parameters, layers and trainable parameters of a model under a method")
    p.add_argument("model")
    p.add_argument("--method", default="full")
    p.add_argument("--num-labels", type=int, default=2)
    p.add_argument("--set", nargs="*", help="more config overrides, e.g. method.r=16")
    p = sub.add_parser("config", help="list every config key with its default and description")
    p.add_argument("--markdown", action="store_true", help="as a markdown table (the README's)")
    p = sub.add_parser("generate", help="generate text from a run folder or a model (stdout: only the generated text)")
    p.add_argument("target", help="run folder (RUN_DIR) or model name/alias/path (MODEL)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--prompt", help="raw text to continue")
    group.add_argument("--chat", help="send as a user message through the chat template")
    group.add_argument("--input", help='JSONL file, one {"prompt": ...} or {"messages": [...]} per line; writes JSONL')
    p.add_argument("--system", help="system prompt for --chat")
    p.add_argument("--output", help="output JSONL for --input (default stdout)")
    _add_gen_flags(p)
    p = sub.add_parser("chat", help="interactive multi-turn chat that streams replies")
    p.add_argument("target", help="run folder (RUN_DIR) or model name/alias/path (MODEL)")
    p.add_argument("--system", help="system prompt")
    _add_gen_flags(p)
    _add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TunelabError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
