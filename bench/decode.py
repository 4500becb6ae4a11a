"""Greedy decode speed, side by side: transformers' generate vs tunelab's decode loop, same weights and precision.

    .venv/bin/python bench/decode.py [--prompts 8] [--new-tokens 128] [--threads 2] [--compile] [--out DIR]

smollm2-135m (the packaged GGUF, de-quantised to float32 once), chat-templated Alpaca dev instructions.
Batch 1: each prompt alone, tokens/s = new tokens / seconds summed over the prompts. Batched: all prompts in
one left-padded batch. Sides: transformers' ``generate(do_sample=False)`` (its default dynamic cache),
tunelab's loop with a dynamic cache (tunelab's default), with a static cache, and (--compile) with the decode
step compiled on the static cache (compile time reported apart). Sides take turns prompt by prompt, so a change
in machine load hits all of them alike. Every side must produce the tokens generate produced.
Writes bench/results/<cpu-kind>/decode.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402


def prompts(tok, n: int) -> list[list[int]]:
    from tunelab.data import templates
    from tunelab.generation.decode import encode_prompt

    rows = json.loads((common.DATA / "alpaca" / "dev.json").read_text(encoding="utf-8"))[:n]
    template = templates.chat_template(tok)
    chats = [
        [{"role": "user", "content": (r["instruction"] + ("\n\n" + r["input"] if r.get("input") else ""))}]
        for r in rows
    ]
    return [encode_prompt(tok, c, 1024, template, log=lambda m: None)[0] for c in chats]


def run_side(side: str, model, tok, rows: list[list[int]], new_tokens: int, eos: list[int], batched: bool, step=None):
    """(list of new-token lists, seconds) for one side over all prompts."""
    import torch

    from tunelab.generation import greedy
    from tunelab.generation.decode import _left_pad

    groups = [rows] if batched else [[r] for r in rows]
    outs, seconds = [], 0.0
    for group in groups:
        ids, mask = _left_pad(group, tok.pad_token_id, "cpu")
        t = time.perf_counter()
        with torch.no_grad():
            if side == "transformers":
                new = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=new_tokens,
                    do_sample=False,
                    num_beams=1,
                    eos_token_id=eos,
                    pad_token_id=tok.pad_token_id,
                    temperature=None,
                    top_k=None,
                    top_p=None,
                )[:, ids.shape[1] :]
            else:
                new = greedy.greedy(
                    model,
                    ids,
                    mask,
                    new_tokens,
                    eos,
                    tok.pad_token_id,
                    static_cache=side != "tunelab-dynamic",
                    step=step,
                )
        seconds += time.perf_counter() - t
        outs += [_cut(r, eos) for r in new.tolist()]
    return outs, seconds


def _cut(row: list[int], eos: list[int]) -> list[int]:
    for i, t in enumerate(row):
        if t in eos:
            return row[: i + 1]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also the compiled decode step")
    p.add_argument("--out")
    args = p.parse_args(argv)

    from tunelab.generation import greedy
    from tunelab.generation.decode import eos_ids
    from tunelab.models import load as model_load

    rep = common.machine(args.threads)
    load0 = common.load_average()
    src = model_load.resolve("smollm2-135m")
    tok = model_load.load_tokenizer(src)
    model, _ = model_load.load_model(src, "AutoModelForCausalLM")
    model.eval()
    eos = eos_ids(model, tok)
    rows = prompts(tok, args.prompts)
    run_side("transformers", model, tok, rows[:1], 8, eos, False)  # warm-up (allocator, kernels) for every side alike
    run_side("tunelab-static", model, tok, rows[:1], 8, eos, False)
    sides = ["transformers", "tunelab-dynamic", "tunelab-static"]
    steps = {side: None for side in sides}
    compile_s = None
    if args.compile:  # compile for both shapes first (reported apart), then time it like the others
        sides.append("tunelab-compiled")
        steps["tunelab-compiled"] = greedy.compiled_step()
        t = time.perf_counter()
        for group in (rows[:1], rows):
            run_side("tunelab-compiled", model, tok, group, 4, eos, len(group) > 1, steps["tunelab-compiled"])
        compile_s = time.perf_counter() - t
    results = {}
    for batched in (False, True):
        # sides interleaved per prompt (batch 1) and repeated in turn (batched), so a change in machine load hits all of them
        groups = [rows] if batched else [[r] for r in rows]
        outs = {side: [] for side in sides}
        secs = {side: 0.0 for side in sides}
        for group in groups:
            for side in sides:
                o, t = run_side(side, model, tok, group, args.new_tokens, eos, batched, steps[side])
                outs[side] += o
                secs[side] += t
        for side in sides:
            results[(side, batched)] = (outs[side], secs[side])
            print(
                f"{'batched' if batched else 'batch-1'} {side}: {sum(map(len, outs[side])) / secs[side]:.1f} tok/s",
                file=sys.stderr,
                flush=True,
            )
    load1 = common.load_average()
    lines = ["# Greedy decode: transformers' generate vs tunelab's decode loop (smollm2-135m, float32)", ""]
    lines += common.header(
        rep, load0, load1, "python bench/decode.py " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    lines += [
        f"{len(rows)} chat-templated Alpaca dev prompts ({min(map(len, rows))}-{max(map(len, rows))} tokens), up to {args.new_tokens} new "
        f"tokens each (EOS ends a reply), float32 weights on both sides, {args.threads} threads. Time covers prefill and decode.",
        "",
        "| mode | side | new tokens | seconds | tokens/s | vs transformers | tokens identical to transformers |",
        "|---|---|---|---|---|---|---|",
    ]
    for batched in (False, True):
        ref_outs, ref_s = results[("transformers", batched)]
        ref_rate = sum(map(len, ref_outs)) / ref_s
        for side in sides:
            outs, secs = results[(side, batched)]
            n = sum(map(len, outs))
            lines.append(
                f"| {'batch 1' if not batched else f'batch {len(rows)}'} | {side} | {n} | {secs:.2f} | {n / secs:.1f} | "
                f"{n / secs / ref_rate:.2f}x | {'yes' if outs == ref_outs else 'NO'} |"
            )
    if compile_s is not None:
        lines += [
            "",
            f"Compiling the decode step (static cache) took {compile_s:.1f} s for the two shapes, not included above.",
        ]
    text = "\n".join(lines) + "\n"
    (common.results_dir(args.out) / "decode.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
