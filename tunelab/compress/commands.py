"""Argument parsing of `tunelab quantize` and `tunelab prune`; cli.py only dispatches."""

from __future__ import annotations

import sys


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_measure_flags(p) -> None:
    """Flags every compression/export command shares: how the cost is measured."""
    p.add_argument("--dev-rows", type=int, help="measure on the first N dev rows only (default: the whole dev split)")
    p.add_argument(
        "--latency-examples",
        type=int,
        default=32,
        help="dev examples timed one at a time for batch-1 latency [default: 32]",
    )
    p.add_argument(
        "--batch-size", type=int, default=32, help="batch size of the batched-throughput measurement [default: 32]"
    )
    p.add_argument(
        "--threads", type=int, help="torch CPU threads while measuring (default: torch's own; recorded in cost.json)"
    )


def add_parsers(sub) -> None:
    from tunelab.compress.schemes import SCHEMES

    p = sub.add_parser(
        "quantize",
        help="quantize a run's linear layers (int8/int4); prints and stores the accuracy/latency/size cost",
        description="tunelab quantize RUN_DIR OUT_DIR --scheme SCHEME; OUT_DIR is a new run folder that eval, predict, "
        "generate and serve load. Schemes: " + "; ".join(f"{k}: {v}" for k, v in SCHEMES.items()),
    )
    p.add_argument("run_dir", help="a training run (mergeable methods are merged first) or a pruned run")
    p.add_argument("out_dir", help="new or empty folder for the quantized run")
    p.add_argument("--scheme", required=True, choices=list(SCHEMES), help="quantization scheme")
    add_measure_flags(p)
    p = sub.add_parser(
        "prune",
        help="prune a run (magnitude or structured heads/FFN), optional recovery fine-tune; accuracy-vs-sparsity table",
        description="tunelab prune RUN_DIR OUT_DIR --method magnitude --sparsity S | --method structured [--heads H] [--ffn F] "
        "[--recover-steps N]",
    )
    p.add_argument("run_dir", help="a training run (mergeable methods are merged first) or a pruned run")
    p.add_argument("out_dir", help="new or empty folder for the pruned run")
    p.add_argument(
        "--method",
        default="structured",
        choices=["magnitude", "structured"],
        help="magnitude: zero the smallest weights (dense matrices); structured: remove whole heads/FFN neurons [default: structured]",
    )
    p.add_argument("--sparsity", type=float, default=0.0, help="magnitude: fraction of each layer's weights to zero")
    p.add_argument("--heads", type=float, default=0.0, help="structured: fraction of all attention heads to remove")
    p.add_argument("--ffn", type=float, default=0.0, help="structured: fraction of all FFN neurons to remove")
    p.add_argument(
        "--importance-rows",
        type=int,
        default=256,
        help="structured: training rows for the Taylor importance scores [default: 256]",
    )
    p.add_argument(
        "--recover-steps",
        type=int,
        default=0,
        help="fine-tune the pruned model this many steps with the run's training settings [default: 0]",
    )
    p.add_argument(
        "--recover-lr", type=float, help="learning rate of the recovery fine-tune (default: the run's train.lr)"
    )
    add_measure_flags(p)


def set_threads(args) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def quantize(args) -> int:
    from tunelab.compress import quantize as quantize_mod

    set_threads(args)
    quantize_mod.run(
        args.run_dir,
        args.out_dir,
        args.scheme,
        dev_rows=args.dev_rows,
        latency_n=args.latency_examples,
        batch_size=args.batch_size,
        log=_log,
    )
    _log(f"done: quantized run in {args.out_dir} (cost.json, cost.md)")
    return 0


def prune(args) -> int:
    from tunelab.compress import prune as prune_mod

    set_threads(args)
    prune_mod.run(
        args.run_dir,
        args.out_dir,
        method=args.method,
        sparsity=args.sparsity,
        heads=args.heads,
        ffn=args.ffn,
        recover_steps=args.recover_steps,
        recover_lr=args.recover_lr,
        importance_rows=args.importance_rows,
        dev_rows=args.dev_rows,
        latency_n=args.latency_examples,
        batch_size=args.batch_size,
        log=_log,
    )
    _log(f"done: pruned run in {args.out_dir} (cost.json, cost.md, prune.png)")
    return 0
