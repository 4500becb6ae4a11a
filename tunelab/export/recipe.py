"""`tunelab export RUN OUT --format onnx|gguf`: write a run for another runtime, checked against PyTorch.

onnx  classification and NER runs; the result runs on onnxruntime. Checked: max |logit difference| against the
      PyTorch model on dev inputs (batch 1 and padded batches), dev metrics and latency on onnxruntime.
gguf  Llama-family causal-LM runs (a LoRA run is merged first); the result runs on llama.cpp (or on torch, read
      back by transformers). Checked: dev loss of the file's weights, greedy-token parity over the first dev
      prompts against the fp32 source (on torch-from-GGUF always, on llama.cpp when llama-cpp-python is installed),
      and generation speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tunelab.compress import cost, output
from tunelab.errors import TunelabError
from tunelab.export import gguf, onnx, parity

FORMATS = ("onnx", "gguf")


def run(
    src: str | Path,
    out: str | Path,
    fmt: str,
    *,
    dtype: str = "f16",
    opset: int = 18,
    parity_prompts: int = 10,
    parity_tokens: int = 32,
    dev_rows: int | None = None,
    latency_n: int = 32,
    batch_size: int = 32,
    log: Callable[[str], None] = print,
) -> dict:
    if fmt not in FORMATS:
        raise TunelabError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    loaded, model, _ = output.load_source(src, "export")
    (onnx.check_task if fmt == "onnx" else gguf.check_task)(loaded.task, src)
    with output.Output(out, src) as result:
        dev = cost.dev_data(loaded.cfg, loaded.tokenizer, loaded.labels, log, dev_rows)
        log(f"export: measuring the source on {len(dev.features)} dev examples")
        before = cost.measure(model, dev, cost.serialized_bytes(model), latency_n=latency_n, batch_size=batch_size)
        step = _onnx if fmt == "onnx" else _gguf
        info, after, extra, notes = step(
            loaded,
            model,
            dev,
            result,
            before,
            log,
            dtype=dtype,
            opset=opset,
            parity_prompts=parity_prompts,
            parity_tokens=parity_tokens,
            latency_n=latency_n,
            batch_size=batch_size,
            src=src,
        )
        record = {
            "step": {"export": {"format": fmt, **({"dtype": dtype} if fmt == "gguf" else {"opset": opset})}},
            "source": before,
            "result": after,
            **extra,
            "machine": cost.machine(),
        }
        rows = cost.compare(before, after, loaded.cfg.train.metric or "loss")
        md = output.report(f"export {fmt}: {Path(src).name} -> {Path(out).name}", rows, record["machine"], notes)
        log("\n" + cost.table(rows) + "\n" + "\n".join(notes))
        result.finish(info, record, md, after["dev"])
    return record


def _onnx(loaded, model, dev, result, before, log, *, opset, latency_n, batch_size, **_):
    feats = dev.features[:64]
    by_length = sorted(feats, key=lambda f: len(f["input_ids"]))
    sample = cost.model_inputs(
        dev.collate([by_length[0], by_length[-1]])
    )  # two lengths: nothing specialises to one shape
    path = result.model_dir / onnx.ONNX_FILE
    log(f"export: torch.onnx (opset {opset}, dynamic batch and sequence axes)")
    names = onnx.export(model, sample, path, opset)
    model.config.save_pretrained(str(result.model_dir))
    loaded.tokenizer.save_pretrained(str(result.model_dir))
    reloaded = onnx.load(result.tmp, loaded.cfg, loaded.labels, {}, "onnxruntime")
    singles = [cost.model_inputs(dev.collate([f])) for f in dev.features[:latency_n]]
    batches = [
        cost.model_inputs(dev.collate(dev.features[s : s + batch_size]))
        for s in range(0, min(len(dev.features), 256), batch_size)
    ]
    diff = onnx.max_abs_diff(model, reloaded.model, singles + batches)
    log(
        f"export: max |logit difference| onnxruntime vs PyTorch: {diff:.3g} over {len(singles)} single inputs and {len(batches)} batches"
    )
    after = cost.measure(
        reloaded.model, dev, cost.files_bytes(result.model_dir), latency_n=latency_n, batch_size=batch_size
    )
    parity_rec = {
        "max_abs_logit_diff": diff,
        "single_inputs": len(singles),
        "batches": len(batches),
        "batch_size": batch_size,
    }
    info = {"format": "onnx", "file": onnx.ONNX_FILE, "inputs": list(names), "opset": opset}
    notes = [
        f"max |logit difference| onnxruntime vs PyTorch (fp32) on dev inputs: {diff:.3g}",
        f"onnxruntime latency and throughput are measured with {reloaded.model.session.get_session_options().intra_op_num_threads} intra-op threads",
    ]
    return info, after, {"parity": parity_rec}, notes


def _gguf(
    loaded, model, dev, result, before, log, *, dtype, parity_prompts, parity_tokens, src, latency_n, batch_size, **_
):
    from tunelab.export import llamacpp
    from tunelab.recipes import finetune

    name = gguf.file_name(dtype)
    log(f"export: writing {name}")
    info = {
        "format": "gguf",
        "file": name,
        **gguf.write(model, loaded.tokenizer, result.model_dir / name, dtype, name=Path(src).name),
    }
    gguf.save_side_files(model, loaded.tokenizer, result.model_dir)
    reloaded = gguf.load(result.tmp, loaded.cfg, loaded.labels, info, "torch")
    after = cost.measure(
        reloaded.model, dev, cost.files_bytes(result.model_dir), latency_n=latency_n, batch_size=batch_size
    )
    rows = finetune.read_splits(loaded.cfg, loaded.task, lambda _m: None)["dev"]
    prompts = parity.prompt_ids(
        loaded.tokenizer, loaded.task.prompt_template(loaded), loaded.task.prompts(rows)[:parity_prompts]
    )
    if not prompts:
        raise TunelabError(f"{src}: the dev split gave no prompts for the greedy parity check")
    log(f"export: greedy parity, {len(prompts)} dev prompts x {parity_tokens} tokens")
    reference = [parity.greedy_torch(model, p, parity_tokens) for p in prompts]
    checks = {
        "torch_from_gguf": parity.compare(
            reference, [parity.greedy_torch(reloaded.model, p, parity_tokens)[0] for p in prompts]
        )
    }
    speed = {
        "torch_fp32_source": parity.tokens_per_second(
            lambda p: parity.greedy_torch(model, p, parity_tokens)[0], prompts
        )
    }
    notes = [_parity_note("transformers reading the GGUF back", checks["torch_from_gguf"])]
    if llamacpp.available():
        llm = llamacpp.LlamaCppModel(result.model_dir / name, result.model_dir)
        greedy = loaded.cfg.generation.model_copy(update={"do_sample": False, "repetition_penalty": 1.0, "seed": None})
        gen = lambda p: llm.tokens(p, parity_tokens, greedy)  # noqa: E731
        checks["llamacpp"] = parity.compare(reference, [gen(p) for p in prompts])
        speed["llamacpp"] = parity.tokens_per_second(gen, prompts)
        llm.close()
        notes.append(_parity_note("llama.cpp", checks["llamacpp"]))
    else:
        checks["llamacpp"] = {"skipped": llamacpp.INSTALL_HINT}
        notes.append(f"llama.cpp parity not checked: {llamacpp.INSTALL_HINT}")
    notes.append("greedy generation, batch 1, tokens/s: " + ", ".join(f"{k} {v}" for k, v in speed.items()))
    if info.get("warning"):
        notes.append(info["warning"])
    return info, after, {"parity": checks, "generation_tokens_per_s": speed}, notes


def _parity_note(what: str, check: dict) -> str:
    diffs = [r for r in check["per_prompt"] if not r["equal"]]
    text = f"greedy parity vs the fp32 source, {what}: {check['identical']}/{check['prompts']} prompts identical over {check['tokens_per_prompt']} tokens"
    if diffs:
        text += "; first differences at tokens " + ", ".join(str(r["first_difference"]) for r in diffs)
        text += " where the source's top-2 logit margin was " + ", ".join(
            f"{r['reference_margin_at_difference']:.3g}" for r in diffs
        )
    return text
