"""Argument parsing of `tunelab export`; cli.py only dispatches."""

from __future__ import annotations

import sys


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_parser(sub) -> None:
    from tunelab.compress.commands import add_measure_flags

    dtypes = ("f16", "q8_0", "q4_0", "q4_1", "f32")  # gguf.DTYPES (a test keeps them equal; gguf imports torch)

    p = sub.add_parser(
        "export",
        help="export a run to ONNX (classification/NER, onnxruntime) or GGUF (causal LM, llama.cpp), checked against PyTorch",
        description="tunelab export RUN_DIR OUT_DIR --format onnx|gguf [--dtype f16|q8_0|q4_0|q4_1|f32]; OUT_DIR is a new run "
        "folder that eval/predict (onnx) or eval/generate/serve (gguf) load",
    )
    p.add_argument("run_dir", help="a training run (mergeable methods are merged first) or a pruned run")
    p.add_argument("out_dir", help="new or empty folder for the exported run")
    p.add_argument(
        "--format",
        required=True,
        choices=["onnx", "gguf"],
        help="onnx: classification and NER; gguf: Llama-family causal LMs",
    )
    p.add_argument(
        "--dtype",
        default="f16",
        choices=list(dtypes),
        help="gguf: storage type of the weight matrices [default: f16]",
    )
    p.add_argument("--opset", type=int, default=18, help="onnx: ONNX opset version [default: 18]")
    p.add_argument(
        "--parity-prompts",
        type=int,
        default=10,
        help="gguf: dev prompts for the greedy-token parity check [default: 10]",
    )
    p.add_argument(
        "--parity-tokens", type=int, default=32, help="gguf: greedy tokens compared per prompt [default: 32]"
    )
    add_measure_flags(p)


def export(args) -> int:
    from tunelab.compress.commands import set_threads
    from tunelab.export import recipe

    set_threads(args)
    recipe.run(
        args.run_dir,
        args.out_dir,
        args.format,
        dtype=args.dtype,
        opset=args.opset,
        parity_prompts=args.parity_prompts,
        parity_tokens=args.parity_tokens,
        dev_rows=args.dev_rows,
        latency_n=args.latency_examples,
        batch_size=args.batch_size,
        log=_log,
    )
    _log(f"done: {args.format} run in {args.out_dir} (cost.json, cost.md)")
    return 0
