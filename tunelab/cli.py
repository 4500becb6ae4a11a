"""The `tunelab` command: a table of subcommands, each a plain function of parsed arguments."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tunelab.cliargs import add_threads_flag
from tunelab.errors import TunelabError


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_train(args) -> int:
    if not args.config:  # a bare `tunelab train` must never start a default run
        print(train_usage(), file=sys.stderr)
        return 2
    from tunelab import config
    from tunelab.recipes import finetune
    from tunelab.training import distributed
    from tunelab.training.interrupt import Interrupted

    path, overrides = _split_config_args(args.config)
    cfg = config.load(path, overrides)
    log = _log if distributed.is_main_process() else _quiet_log
    try:
        final = finetune.run(cfg, quiet=args.quiet, log=log, resume_anyway=args.resume_anyway)
    except Interrupted as stop:
        log(interrupted_message(stop.checkpoint, f"{stop} (the step finished and was saved)"))
        return stop.exit_code
    except KeyboardInterrupt:
        log(interrupted_message(_latest_checkpoint(cfg.output_dir), "interrupted"))
        return 130
    shown = ", ".join(f"{k} {v:.4f}" for k, v in final["dev"].items() if isinstance(v, float))
    log(f"done: dev {shown}; run folder {cfg.output_dir}")
    return 0


def cmd_distill(args) -> int:
    from tunelab.recipes import distill
    from tunelab.training import distributed
    from tunelab.training.interrupt import Interrupted

    path, overrides = _split_config_args(args.config)
    log = _log if distributed.is_main_process() else _quiet_log
    try:
        final = distill.run(path, overrides, quiet=args.quiet, log=log, resume_anyway=args.resume_anyway)
    except Interrupted as stop:
        log(interrupted_message(stop.checkpoint, f"{stop} (the step finished and was saved)"))
        return stop.exit_code
    except KeyboardInterrupt:
        out = distill.load(path, overrides)[0].output_dir
        log(interrupted_message(_latest_checkpoint(out), "interrupted"))
        return 130
    teacher = final["distill"]["teacher_dev"]
    shown = ", ".join(f"{k} {v:.4f} (teacher {teacher[k]:.4f})" for k, v in final["dev"].items() if k in teacher)
    log(f"done: student dev {shown}")
    return 0


def interrupted_message(checkpoint, what: str) -> str:
    """One line for an interrupted training run; it says resumable only when a checkpoint exists."""
    if checkpoint is None:
        return f"{what}; no checkpoint was written yet, so a rerun starts from the beginning"
    return f"{what}; resumable from {checkpoint}: rerun the same command to continue"


def _latest_checkpoint(output_dir: str):
    from tunelab.training import checkpoint

    return checkpoint.latest(Path(output_dir) / "checkpoints")


def _quiet_log(_msg: str) -> None:
    pass


def _split_config_args(items: list[str]) -> tuple[str | None, list[str]]:
    """`tunelab train [CONFIG] [key=value ...]`: the first item is the YAML file unless it is an override."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


def train_usage() -> str:
    """What a bare `tunelab train` prints: the usage and the example configs to start from."""
    from tunelab import examples

    lines = [
        "usage: tunelab train CONFIG.yaml [key.path=value ...] [--quiet]",
        "nothing was trained: give a config file (and/or key=value overrides). Example configs:",
    ]
    found = examples.listing()
    width = max((len(path) for path, _ in found), default=0)
    lines += [f"  {path:<{width}}  {about}" for path, about in found] or [
        "  (none found: see examples/ in the tunelab repository)"
    ]
    lines.append("every key with its default: tunelab config (or tunelab train --help)")
    return "\n".join(lines)


def cmd_config(args) -> int:
    from tunelab import config, docs

    if args.section and args.section not in docs.sections():
        raise TunelabError(f"--section {args.section}: unknown; sections: {', '.join(docs.sections())}")
    if args.markdown:
        print(docs.markdown(args.section))
    elif args.section:
        rows = [(key.strip("`").replace("` ", "  "), d, desc) for s, key, d, desc in docs.rows() if s == args.section]
        width = max(len(k) for k, _, _ in rows)
        print("\n".join(f"  {k:<{width}}  {desc}" + (f" [default: {d}]" if d else "") for k, d, desc in rows))
    else:
        print(config_help(config))
    return 0


def config_help(config) -> str:
    rows = config.describe()
    width = max(len(k) for k, _, _ in rows)
    return "\n".join(f"  {k:<{width}}  {d}" + (f" [default: {v}]" if v else "") for k, v, d in rows)


def cmd_eval(args) -> int:
    from tunelab import hardware, runs
    from tunelab.data import inputs
    from tunelab.tasks import TASKS

    cfg = inputs.adapted(runs.read_config(runs.check_run_dir(Path(args.run_dir))), args)
    task = TASKS[cfg.task.name]
    rows = task.read(cfg, args.data).rows  # bad input fails before the model loads
    hardware.use_threads(args.threads)
    loaded = runs.load_run(args.run_dir)
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

    cfg = inputs.adapted(runs.read_config(runs.check_run_dir(Path(args.run_dir))), args)
    task = TASKS[cfg.task.name]
    if args.data:  # read before the model loads: a wrong column or format costs no loading time
        rows = task.read(cfg, args.data, with_labels=False).rows
    else:
        rows = task.parse_inputs(sys.stdin, "<stdin>")
    hardware.use_threads(args.threads)
    loaded = runs.load_run(args.run_dir)
    loaded.cfg = cfg
    for out in task.predict(loaded, rows):
        print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_clean(args) -> int:
    from tunelab.recipes import clean

    clean.run(args.run_dir, keep=args.keep, force=args.force, dry_run=args.dry_run, log=_log)
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


def cmd_merge(args) -> int:
    from tunelab.recipes import merge

    merge.run(args.run_dir, args.out_dir, log=_log)
    return 0


def cmd_compare(args) -> int:
    from tunelab.recipes import compare

    path, overrides = _split_config_args(args.config)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    out = compare.run(path, overrides, methods=methods, per_method=args.set or [], log=_log)
    _log(f"done: {out / 'compare.md'}")
    return 0


def cmd_icl(args) -> int:
    if not args.config:
        print(
            "usage: tunelab icl CONFIG.yaml [key=value ...]  (needs prompt.verbalizer; see README: In-context learning)",
            file=sys.stderr,
        )
        return 2
    from tunelab import config
    from tunelab.recipes import icl

    path, overrides = _split_config_args(args.config)
    summary = icl.run(config.load(path, overrides), log=_log)
    for r in summary["results"]:
        _log(
            f"{r['strategy']} calibrated={r['calibrated']}: accuracy {r['accuracy']:.4f} ± {r['accuracy_std']:.4f} "
            f"over {len(r['seeds'])} seed(s)"
        )
    _log(f"done: {Path(summary['output_dir']) / 'icl.md'}")
    return 0


def cmd_fairness(args) -> int:
    from tunelab.evaluation import commands

    return commands.fairness(args, _log)


def cmd_explain(args) -> int:
    from tunelab.evaluation import commands

    return commands.explain(args, _log)


def cmd_calibrate(args) -> int:
    from tunelab.evaluation import commands

    return commands.calibrate(args, _log)


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


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "generate": cmd_generate,
    "chat": cmd_chat,
    "compare": cmd_compare,
    "distill": cmd_distill,
    "icl": cmd_icl,
    "merge": cmd_merge,
    "clean": cmd_clean,
    "serve": cmd_serve,
    "ui": cmd_ui,
    "calibrate": cmd_calibrate,
    "fairness": cmd_fairness,
    "explain": cmd_explain,
    "data": cmd_data,
    "quantize": cmd_quantize,
    "prune": cmd_prune,
    "export": cmd_export,
    "info": cmd_info,
    "doctor": cmd_doctor,
    "config": cmd_config,
}


class _HelpWithKeys(argparse.Action):
    """`-h/--help` that appends every config key; the config schema is imported only when help is asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from tunelab import config

        parser.print_help()
        print("\nconfig keys:\n" + config_help(config))
        parser.exit()


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
    _add_run_commands(sub)
    _add_model_commands(sub)
    _add_feature_commands(sub)
    return parser


def _add_run_commands(sub) -> None:
    """train, and the commands that use or tidy a run folder: eval, predict, clean."""
    from tunelab.data import inputs

    p = sub.add_parser(
        "train",
        help="fine-tune a model",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="tunelab train CONFIG.yaml [key.path=value ...]",
    )
    p.add_argument("-h", "--help", action=_HelpWithKeys, help="show this help and every config key")
    p.add_argument("config", nargs="*", help="YAML config file, then overrides like train.lr=3e-5")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--resume-anyway",
        action="store_true",
        help="continue an interrupted run although its config or training data changed since it started (refused otherwise)",
    )
    p = sub.add_parser(
        "distill",
        help="train a student on a teacher's soft targets (knowledge distillation)",
        description="tunelab distill CONFIG.yaml [key.path=value ...]: a training config plus a distill: section",
    )
    p.add_argument("config", nargs="+", help="YAML config with a distill: section, then overrides (distill.alpha=0.7)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--resume-anyway",
        action="store_true",
        help="continue an interrupted run although its config or training data changed since it started",
    )
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
    p = sub.add_parser("predict", help="predict for a file or stdin, as JSONL (labels, entities, or generated text)")
    p.add_argument("run_dir")
    p.add_argument(
        "--data",
        help="input file (csv/tsv/json/jsonl as the run's data, or .txt: one text per line); "
        "default: stdin, one text or JSON object per line",
    )
    inputs.add_flags(p, labels=False)
    add_threads_flag(p)
    p = sub.add_parser("clean", help="remove checkpoint state a run no longer needs (see train.keep_checkpoints)")
    p.add_argument("run_dir")
    p.add_argument(
        "--keep",
        choices=["best+last", "last", "none"],
        default="none",
        help="what stays of a finished run's checkpoints (default none: model/ and the reports remain)",
    )
    p.add_argument("--force", action="store_true", help="also clean an unfinished run (it can no longer be resumed)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")


def _add_model_commands(sub) -> None:
    """info, doctor, merge, compare and config."""
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
    p = sub.add_parser("merge", help="write a run as a plain HF model directory (adapters folded in)")
    p.add_argument("run_dir")
    p.add_argument("out_dir", help="new or empty folder")
    p = sub.add_parser(
        "compare",
        help="train several methods on the same data, seed and steps; write compare.md/.html",
        description="tunelab compare CONFIG.yaml [key=value ...] [--methods a,b] [--set METHOD.key=value ...]",
    )
    p.add_argument(
        "config",
        nargs="*",
        help="YAML config (its output_dir becomes the compare folder), then overrides for every method",
    )
    p.add_argument("--methods", help="comma-separated methods; default: every method applicable to the model")
    p.add_argument("--set", nargs="*", help="per-method overrides, e.g. lora.train.lr=5e-4 lora.method.r=16")
    p = sub.add_parser(
        "icl",
        help="zero-/few-shot classification by prompting (template + verbalizer, demonstrations, calibration)",
        description="tunelab icl CONFIG.yaml [key=value ...]: writes icl.md and icl.json into output_dir",
    )
    p.add_argument("config", nargs="*", help="YAML config, then key=value overrides")
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


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, except that key=value overrides may also follow the options (`predict RUN --data x data.format=csv`)."""
    args, extra = parser.parse_known_args(argv)
    if (
        extra
        and isinstance(getattr(args, "overrides", None), list)
        and all("=" in e and not e.startswith("-") for e in extra)
    ):
        args.overrides += extra
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
