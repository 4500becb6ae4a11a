"""The `tunelab` command: a table of subcommands, each a plain function of parsed arguments."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tunelab.cliargs import add_threads_flag, config_help
from tunelab.errors import TunelabError


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_config(args) -> int:
    from tunelab import docs

    if args.section and args.section not in docs.sections():
        raise TunelabError(f"--section {args.section}: unknown; sections: {', '.join(docs.sections())}")
    if args.markdown:
        print(docs.markdown(args.section))
    elif args.section:
        rows = [(key.strip("`").replace("` ", "  "), d, desc) for s, key, d, desc in docs.rows() if s == args.section]
        width = max(len(k) for k, _, _ in rows)
        print("\n".join(f"  {k:<{width}}  {desc}" + (f" [default: {d}]" if d else "") for k, d, desc in rows))
    else:
        print(config_help())
    return 0


def cmd_eval(args) -> int:
    from tunelab import hardware, runs
    from tunelab.data import inputs
    from tunelab.tasks import TASKS

    saved = runs.read_config(runs.check_run_dir(Path(args.run_dir)))
    cfg = inputs.adapted(TASKS[saved.task.name].member_config(saved, args.task), args)  # --task: a multitask member
    task = TASKS[cfg.task.name]
    rows = task.read(cfg, args.data).rows  # bad input fails before the model loads
    hardware.use_threads(args.threads)
    loaded = runs.load_run(args.run_dir)
    loaded = loaded.task.member_run(loaded, args.task)
    loaded.cfg = cfg
    metrics = task.evaluate(loaded, rows, args.data, _log)
    from tunelab.evaluation import eval_extras

    metrics.update(eval_extras.analyse(loaded, Path(args.run_dir), rows, args.errors, _log))
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def cmd_predict(args) -> int:
    """One JSON line per input: the input as ``text`` plus the task's outputs (labels, entities, or generated text)."""
    from tunelab import hardware, runs
    from tunelab.data import inputs
    from tunelab.tasks import TASKS

    saved = runs.read_config(runs.check_run_dir(Path(args.run_dir)))
    cfg = inputs.adapted(TASKS[saved.task.name].member_config(saved, args.task), args)  # --task: a multitask member
    task = TASKS[cfg.task.name]
    if args.data:  # read before the model loads: a wrong column or format costs no loading time
        rows = task.read(cfg, args.data, with_labels=False).rows
    else:
        rows = task.parse_inputs(sys.stdin, "<stdin>")
    hardware.use_threads(args.threads)
    loaded = runs.load_run(args.run_dir)
    loaded = loaded.task.member_run(loaded, args.task)
    loaded.cfg = cfg
    for out in task.predict(loaded, rows):
        print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_info(args) -> int:
    from tunelab import config
    from tunelab.methods import METHODS
    from tunelab.methods.base import count_parameters, find_layers
    from tunelab.models import load as model_load
    from tunelab.tasks import TASKS

    overrides = [f"model.name={args.model}", f"method.name={args.method}"] + list(args.set or [])
    cfg = config.load(None, overrides)
    task = TASKS[cfg.task.name]
    src = model_load.resolve(cfg.model.name, cfg.model.gguf_file, cfg.model.revision)
    model, head = model_load.load_model(
        src, task.auto_class, **task.model_kwargs([str(i) for i in range(args.num_labels)])
    )
    _, layers = find_layers(model)
    total_before = count_parameters(model)[1]
    model = METHODS[cfg.method.name].apply(model, cfg.method, head)
    trainable, total = count_parameters(model)
    info = {
        "model": args.model,
        "architecture": type(model.base_model if hasattr(model, "base_model") else model).__name__,
        "layers": len(layers),
        "parameters": total_before,
        "method": cfg.method.name,
        "task_head": head,
        "trainable_parameters": trainable,
        "trainable_percent": round(100 * trainable / total, 4),
    }
    from tunelab import hardware
    from tunelab.recipes.finetune import training_device_type

    chosen = hardware.resolve_precision(cfg.train.precision, training_device_type())
    info["precision"] = {"name": chosen.name, "reason": chosen.reason}
    print(json.dumps(info, indent=2))
    return 0


def cmd_doctor(args) -> int:
    """What this machine can do for tunelab: CPU flags, threads, measured matmul speed, allocator, versions, precision."""
    import torch

    from tunelab import hardware

    if args.threads:
        torch.set_num_threads(args.threads)
    rep = hardware.report()
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print("\n".join(hardware.format_report(rep)))
    return 0


def cmd_generate(args) -> int:
    from tunelab.generation import commands

    return commands.generate(args, _log)


def cmd_chat(args) -> int:
    from tunelab.generation import commands

    return commands.chat(args, _log)


def cmd_fairness(args) -> int:
    from tunelab.evaluation import commands

    return commands.fairness(args, _log)


def cmd_explain(args) -> int:
    from tunelab.evaluation import commands

    return commands.explain(args, _log)


def cmd_calibrate(args) -> int:
    from tunelab.evaluation import commands

    return commands.calibrate(args, _log)


def cmd_monitor(args) -> int:
    from tunelab.evaluation import commands

    return commands.monitor(args, _log)


def cmd_recommend(args) -> int:
    from tunelab.recommend import commands

    return commands.run(args, _log)


def cmd_serve(args) -> int:
    from tunelab.serve import commands

    return commands.serve(args)


def cmd_ui(args) -> int:
    from tunelab.ui import commands

    return commands.ui(args)


def cmd_data(args) -> int:
    from tunelab.data import commands

    return commands.run(args, _log)


def cmd_quantize(args) -> int:
    from tunelab.compress import commands

    return commands.quantize(args)


def cmd_prune(args) -> int:
    from tunelab.compress import commands

    return commands.prune(args)


def cmd_export(args) -> int:
    from tunelab.export import commands

    return commands.export(args)


def cmd_federated(args) -> int:
    from tunelab.federated import commands

    return commands.federated(args, _log)


def _recipe(name: str):
    """The recipe command `name` (recipes/commands.py), imported when it runs."""

    def run(args) -> int:
        from tunelab.recipes import commands

        return {
            "train": commands.train,
            "distill": commands.distill,
            "continual": commands.continual,
            "compare": commands.compare,
            "icl": commands.icl,
            "merge": commands.merge,
            "clean": commands.clean,
        }[name](args, _log)

    return run


COMMANDS = {
    "train": _recipe("train"),
    "eval": cmd_eval,
    "predict": cmd_predict,
    "generate": cmd_generate,
    "chat": cmd_chat,
    "compare": _recipe("compare"),
    "distill": _recipe("distill"),
    "continual": _recipe("continual"),
    "icl": _recipe("icl"),
    "merge": _recipe("merge"),
    "clean": _recipe("clean"),
    "serve": cmd_serve,
    "ui": cmd_ui,
    "calibrate": cmd_calibrate,
    "fairness": cmd_fairness,
    "explain": cmd_explain,
    "monitor": cmd_monitor,
    "recommend": cmd_recommend,
    "data": cmd_data,
    "quantize": cmd_quantize,
    "prune": cmd_prune,
    "export": cmd_export,
    "federated": cmd_federated,
    "info": cmd_info,
    "doctor": cmd_doctor,
    "config": cmd_config,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; it imports no torch and no config schema, so `tunelab --help` is instant."""

    parser = argparse.ArgumentParser(
        prog="tunelab", description="Fine-tune pretrained language models on your own task."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks (implies --verbose)")
    parser.add_argument(
        "--verbose", action="store_true", help="let other libraries' progress bars and warnings through"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    from tunelab.recipes import commands as recipe_commands

    recipe_commands.add_parsers(sub)
    _add_run_commands(sub)
    _add_model_commands(sub)
    _add_feature_commands(sub)
    return parser


def _add_run_commands(sub) -> None:
    """The commands that use a run folder: eval and predict."""
    from tunelab.data import inputs

    p = sub.add_parser("eval", help="evaluate a run on a labelled file")
    p.add_argument("run_dir")
    p.add_argument(
        "--data",
        required=True,
        help="labelled file (the run's data format unless flags or data.* overrides say otherwise)",
    )
    inputs.add_flags(p, labels=True)
    add_threads_flag(p)
    p.add_argument("--errors", help="write every mistake (most confident first) to this JSONL file")
    p.add_argument("--task", help="multitask runs: the member task to evaluate (its head and labels)")
    p = sub.add_parser("predict", help="predict for a file or stdin, as JSONL (labels, entities, or generated text)")
    p.add_argument("run_dir")
    p.add_argument(
        "--data",
        help="input file (csv/tsv/json/jsonl as the run's data, or .txt: one text per line); "
        "default: stdin, one text or JSON object per line",
    )
    inputs.add_flags(p, labels=False)
    add_threads_flag(p)
    p.add_argument("--task", help="multitask runs: the member task to predict with (its head and labels)")


def _add_model_commands(sub) -> None:
    """info, doctor and config."""
    p = sub.add_parser("info", help="parameters, layers and trainable parameters of a model under a method")
    p.add_argument("model")
    p.add_argument("--method", default="full")
    p.add_argument("--num-labels", type=int, default=2)
    p.add_argument("--set", nargs="*", help="more config overrides, e.g. method.r=16")
    p = sub.add_parser(
        "doctor",
        help="what this machine can do: CPU flags, measured matmul speed, allocator, versions, the precision auto picks",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--threads", type=int, help="measure with this many torch threads (default: torch's own)")
    p = sub.add_parser("config", help="list every config key with its default and description")
    p.add_argument("--markdown", action="store_true", help="as a markdown table (the README's)")
    p.add_argument("--section", help="only one section: run (top-level keys), model, data, method, train, ..., serve")


def _add_feature_commands(sub) -> None:
    """Each feature package declares its own subcommands (generation, evaluation, serve, ui, data, compress, export)."""
    from tunelab.generation import commands

    commands.add_parsers(sub)
    from tunelab.evaluation import commands as eval_commands

    eval_commands.add_parsers(sub)
    from tunelab.serve import commands as serve_commands

    serve_commands.add_parser(sub)
    from tunelab.ui import commands as ui_commands

    ui_commands.add_parser(sub)
    from tunelab.data import commands as data_commands

    data_commands.add_parser(sub)
    from tunelab.compress import commands as compress_commands
    from tunelab.export import commands as export_commands

    compress_commands.add_parsers(sub)
    export_commands.add_parser(sub)
    from tunelab.federated import commands as federated_commands

    federated_commands.add_parser(sub)
    from tunelab.recommend import commands as recommend_commands

    recommend_commands.add_parser(sub)


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that key=value overrides may also follow the options (`predict RUN --data x data.format=csv`,
    `compare cfg.yaml --methods lora train.epochs=1`)."""
    args, extra = parser.parse_known_args(argv)
    # the list that holds a command's key=value overrides: `overrides`, or `config` (the file, then overrides)
    held = next(
        (v for v in (getattr(args, "overrides", None), getattr(args, "config", None)) if isinstance(v, list)), None
    )
    if extra and held is not None and all("=" in e and not e.startswith("-") for e in extra):
        held += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


RESUMABLE = {"compare"}  # commands whose interruption leaves runs to resume (train says so itself, checkpoint or not)


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the real command (not a test calling main): run under tcmalloc when installed
        from tunelab import launch

        launch.maybe_reexec(sys.argv[1:])
    import warnings

    # peft calls a transformers method deprecated in 5.x on every get_peft_model; it is noise for our users
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    from tunelab import exits, progress

    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except BrokenPipeError:  # `tunelab train --help | head`
        return exits.stdout_gone()
    progress.third_party(verbose=args.verbose or args.debug)
    on_interrupt = (
        "interrupted: rerun the same command to resume from the last checkpoint"
        if args.command in RESUMABLE
        else "interrupted"
    )
    return exits.run(lambda: COMMANDS[args.command](args), debug=args.debug, on_interrupt=on_interrupt)


if __name__ == "__main__":
    sys.exit(main())
