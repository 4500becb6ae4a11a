"""`tunelab federated CONFIG`: the subcommand's parser and function (nothing heavy imported at module level)."""

from __future__ import annotations


def federated(args, log) -> int:
    from tunelab.recipes import federated as recipe
    from tunelab.recipes.commands import _split_config_args
    from tunelab.training.interrupt import Interrupted

    path, overrides = _split_config_args(args.config)
    try:
        final = recipe.run(path, overrides, quiet=args.quiet, log=log, resume_anyway=args.resume_anyway)
    except (Interrupted, KeyboardInterrupt):
        out = recipe.load(path, overrides)[0].output_dir
        log(f"interrupted; {recipe.resume_hint(out)}")
        return 130
    fed = final["federated"]
    shown = ", ".join(f"{k} {v:.4f}" for k, v in final["dev"].items() if isinstance(v, float))
    log(
        f"done: global model dev {shown} after {fed['rounds']} rounds; {fed['bytes_per_round']['up']:,} bytes up per "
        f"round; run folder {recipe.load(path, overrides)[0].output_dir}"
    )
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "federated",
        help="federated fine-tuning on Flower: simulated clients train on their own partition, the server averages",
        description="tunelab federated CONFIG.yaml [key.path=value ...]: a training config plus a federated: section",
    )
    p.add_argument(
        "config", nargs="+", help="YAML config with a federated: section, then overrides (federated.rounds=5)"
    )
    p.add_argument("--quiet", action="store_true", help="fewer log lines")
    p.add_argument(
        "--resume-anyway",
        action="store_true",
        help="continue an interrupted federated run although its config changed since it started",
    )
