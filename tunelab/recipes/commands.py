"""The recipe subcommands (train, distill, compare, icl, merge, clean): their parsers and functions.

cli.py only dispatches; like the feature packages' commands modules, nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunelab.cliargs import HelpWithKeys


def train(args, log) -> int:
    if not args.config:  # a bare `tunelab train` must never start a default run
        print(train_usage(), file=sys.stderr)
        return 2
    from tunelab import config
    from tunelab.recipes import finetune
    from tunelab.training import distributed

    path, overrides = _split_config_args(args.config)
    cfg = config.load(path, overrides)
    log = log if distributed.is_main_process() else _quiet_log
    final, code = _interruptible(
        lambda: finetune.run(cfg, quiet=args.quiet, log=log, resume_anyway=args.resume_anyway),
        lambda: cfg.output_dir,
        log,
    )
    if final is None:
        return code
    shown = ", ".join(f"{k} {v:.4f}" for k, v in final["dev"].items() if isinstance(v, float))
    log(f"done: dev {shown}; run folder {cfg.output_dir}")
    return 0


def distill(args, log) -> int:
    from tunelab.recipes import distill as recipe
    from tunelab.training import distributed

    path, overrides = _split_config_args(args.config)
    log = log if distributed.is_main_process() else _quiet_log
    final, code = _interruptible(
        lambda: recipe.run(path, overrides, quiet=args.quiet, log=log, resume_anyway=args.resume_anyway),
        lambda: recipe.load(path, overrides)[0].output_dir,
        log,
    )
    if final is None:
        return code
    teacher = final["distill"]["teacher_dev"]
    shown = ", ".join(f"{k} {v:.4f} (teacher {teacher[k]:.4f})" for k, v in final["dev"].items() if k in teacher)
    log(f"done: student dev {shown}")
    return 0


def _interruptible(run, output_dir, log) -> tuple[dict | None, int]:
    """(result, 0) of a training recipe; when it is interrupted, (None, exit code) after one line saying whether
    and from where it resumes (``output_dir()`` names the run folder whose checkpoints count)."""
    from tunelab.training.interrupt import Interrupted

    try:
        return run(), 0
    except Interrupted as stop:
        log(interrupted_message(stop.checkpoint, f"{stop} (the step finished and was saved)"))
        return None, stop.exit_code
    except KeyboardInterrupt:
        log(interrupted_message(_latest_checkpoint(output_dir()), "interrupted"))
        return None, 130


def continual(args, log) -> int:
    from tunelab.recipes import continual as recipe

    path, overrides = _split_config_args(args.config)
    try:
        result = recipe.run(path, overrides, quiet=args.quiet, log=log)
    except KeyboardInterrupt:
        log("interrupted: rerun the same command to resume (finished stages are kept, the current one resumes)")
        return 130
    log(
        f"done: average forgetting {result['average_forgetting']:.4f}, backward transfer "
        f"{result['backward_transfer']:+.4f}; {Path(result['stages'][0]).parent / 'report.md'}"
    )
    return 0


def compare(args, log) -> int:
    from tunelab.recipes import compare as recipe

    path, overrides = _split_config_args(args.config)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    out = recipe.run(path, overrides, methods=methods, per_method=args.set or [], log=log)
    log(f"done: {out / 'compare.md'}")
    return 0


def icl(args, log) -> int:
    if not args.config:
        print(
            "usage: tunelab icl CONFIG.yaml [key=value ...]  (needs prompt.verbalizer; see README: In-context learning)",
            file=sys.stderr,
        )
        return 2
    from tunelab import config
    from tunelab.recipes import icl as recipe

    path, overrides = _split_config_args(args.config)
    summary = recipe.run(config.load(path, overrides), log=log)
    for r in summary["results"]:
        log(
            f"{r['strategy']} calibrated={r['calibrated']}: accuracy {r['accuracy']:.4f} ± {r['accuracy_std']:.4f} "
            f"over {len(r['seeds'])} seed(s)"
        )
    log(f"done: {Path(summary['output_dir']) / 'icl.md'}")
    return 0


def merge(args, log) -> int:
    from tunelab.recipes import merge as recipe

    recipe.run(args.run_dir, args.out_dir, log=log)
    return 0


def clean(args, log) -> int:
    from tunelab.recipes import clean as recipe

    recipe.run(args.run_dir, keep=args.keep, force=args.force, dry_run=args.dry_run, log=log)
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


def add_parsers(sub) -> None:
    """train and distill (they write a run folder), compare and icl (a folder of runs or results), merge and clean."""
    p = sub.add_parser(
        "train",
        help="fine-tune a model",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="tunelab train CONFIG.yaml [key.path=value ...]",
    )
    p.add_argument("-h", "--help", action=HelpWithKeys, help="show this help and every config key")
    p.add_argument("config", nargs="*", help="YAML config file, then overrides like train.lr=3e-5")
    _add_run_flags(p, " (refused otherwise)")
    p = sub.add_parser(
        "distill",
        help="train a student on a teacher's soft targets (knowledge distillation)",
        description="tunelab distill CONFIG.yaml [key.path=value ...]: a training config plus a distill: section",
    )
    p.add_argument("config", nargs="+", help="YAML config with a distill: section, then overrides (distill.alpha=0.7)")
    _add_run_flags(p, "")
    p = sub.add_parser(
        "continual",
        help="learn tasks one after another (naive, replay, EWC, LwF, adapter per stage); report the forgetting",
        description="tunelab continual CONFIG.yaml [key.path=value ...]: a training config plus a continual: section",
    )
    p.add_argument("config", nargs="+", help="YAML config with a continual: section, then overrides")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_folder_parsers(sub)


def _add_run_flags(p, refused: str) -> None:
    """--quiet and --resume-anyway of the commands that train one run folder (train, distill)."""
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--resume-anyway",
        action="store_true",
        help=f"continue an interrupted run although its config or training data changed since it started{refused}",
    )


def _add_folder_parsers(sub) -> None:
    """compare, icl, merge and clean."""
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
    p = sub.add_parser("merge", help="write a run as a plain HF model directory (adapters folded in)")
    p.add_argument("run_dir")
    p.add_argument("out_dir", help="new or empty folder")
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
