"""One side of bench/speed.py, run in its own process: `python bench/speed_sides.py SIDE SPEC.json OUT.json`.

Sides: tunelab (the `train` recipe), reference (HF Trainer + PEFT as a careful user sets it up: bf16,
dynamic padding, length-grouped batches, fused AdamW), hf-default (HF Trainer + PEFT with default
TrainingArguments: fp32), naive (the seeds' recipe: pad to max_length, fp32, plain loop, model dropout on),
peak (bf16 matmul GFLOP/s of this machine). Every side reads the same rows and encodes them with
tunelab's encoders, so all see identical token ids; the timed region is first step start to last step end.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from tunelab import config as config_mod  # noqa: E402
from tunelab.data import templates  # noqa: E402
from tunelab.models import load as model_load  # noqa: E402
from tunelab.tasks import causal_lm, classification  # noqa: E402

# ---------------------------------------------------------------- data, identical for every side


def load_data(spec: dict):
    """(tokenizer, train features, dev features, labels) encoded by tunelab's encoders from spec's files."""
    src = model_load.resolve(spec["model"])
    tok = model_load.load_tokenizer(src)
    if spec["task"] == "causal_lm":
        template = templates.chat_template(tok)

        def enc(path):
            return causal_lm.encode(
                templates.read_examples(path).rows, tok, spec["max_length"], path, causal_lm.LMOptions(template)
            )

        return tok, enc(spec["train"]), enc(spec["dev"]), None
    cfg = config_mod.validate({"data": {"train": spec["train"], "text_column": "sentence"}}, "bench")
    task = classification.Classification()
    train_rows = task.read(cfg, spec["train"]).rows
    labels = classification.label_space(train_rows, spec["train"])
    dev_rows = task.read(cfg, spec["dev"]).rows
    enc = lambda rows, path: classification.encode(rows, tok, labels, spec["max_length"], path)  # noqa: E731
    return tok, enc(train_rows, spec["train"]), enc(dev_rows, spec["dev"]), labels


def token_counts(spec: dict, feats: list[dict]) -> dict:
    """Useful (non-pad) tokens, target tokens (LM head positions that enter the loss) and sum of squared lengths."""
    lengths = [len(f["input_ids"]) for f in feats]
    if spec["task"] == "causal_lm":
        targets = sum(sum(1 for t in f["labels"][1:] if t != -100) for f in feats)
    else:
        targets = len(feats)
    return {"tokens": sum(lengths), "targets": targets, "sq": sum(n * n for n in lengths)}


def base_model(spec: dict, labels):
    src = model_load.resolve(spec["model"])
    auto = causal_lm.CausalLM.auto_class if spec["task"] == "causal_lm" else classification.Classification.auto_class
    kwargs = classification.model_kwargs(labels) if labels else {}
    return model_load.load_model(src, auto, **kwargs)


def model_shape(model) -> dict:
    """Matmul parameters of the layer stack, of the output head, layers and width (for the FLOP count)."""
    from tunelab.methods.base import find_layers

    _, layers = find_layers(model)
    body = sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings() if spec_is_lm(model) else None
    return {
        "body": body,
        "head": head.weight.numel() if head is not None else 0,
        "layers": len(layers),
        "width": model.config.hidden_size,
        "causal": spec_is_lm(model),
    }


def spec_is_lm(model) -> bool:
    return model.get_output_embeddings() is not None and "CausalLM" in type(model).__name__


def useful_flops(shape: dict, counts: dict, trainable_matmul: int, full: bool) -> float:
    """FLOPs the training step needs: forward 2/param/token, input-gradients 2, weight-gradients 2 for trained matrices;
    the LM head only at target positions; attention scores 4*L*d per (query, key) pair (causal: half), x3 for the backward."""
    t, tgt = counts["tokens"], counts["targets"]
    matmul = 4 * shape["body"] * t + 4 * shape["head"] * tgt + 2 * trainable_matmul * t
    if full and shape["head"]:
        matmul += 2 * shape["head"] * tgt
    attn = 3 * 4 * shape["layers"] * shape["width"] * counts["sq"] * (0.5 if shape["causal"] else 1.0)
    return float(matmul + attn)


def trainable_matmul_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and p.ndim == 2 and "embed" not in n)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- sides


def run_tunelab(spec: dict, work: Path) -> dict:
    from tunelab.recipes import finetune
    from tunelab.training.loop import Callback

    class Timer(Callback):
        start = end = None

        shape = trained = None

        def on_step_begin(self, ctx):
            model = ctx.model
            if self.start is None:  # the model as trained (method applied): what the FLOP count needs
                inner = model.get_base_model() if hasattr(model, "get_base_model") else model
                self.shape, self.trained = model_shape(inner), trainable_matmul_params(model)
            self.start = self.start or time.perf_counter()

        def on_before_zero_grad(self, ctx):
            self.end = time.perf_counter()

    timer = Timer()
    raw = {
        "task": spec["task"],
        "output_dir": str(work / "run"),
        "model": {"name": spec["model"], "max_length": spec["max_length"]},
        "data": {"train": spec["train"], "dev": spec["dev"]},
        "method": {"name": spec["method"], **spec.get("method_options", {})},
        "train": {
            "epochs": 1,
            "batch_size": spec["batch_size"],
            "lr": spec["lr"],
            "threads": spec["threads"],
            "log_every": 5,
            "eval_every": 10_000,
            **spec.get("tunelab_train", {}),
        },
    }
    if spec["task"] == "causal_lm":
        raw["task"] = {"name": "causal_lm", "eval_generations": 0, "report_samples": 0, **spec.get("tunelab_lm", {})}
    else:
        raw["data"]["text_column"] = "sentence"
    for section, values in spec.get("tunelab_sections", {}).items():
        raw.setdefault(section, {}).update(values)
    cfg = config_mod.validate(raw, "bench")
    final = finetune.run(cfg, quiet=True, log=lambda m: None, callbacks=[timer])
    logs = [json.loads(x) for x in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    train_loss = [r["loss"] for r in logs if "loss" in r][-1]
    metric = final["dev"]["loss"] if spec["task"] == "causal_lm" else final["dev"]["accuracy"]
    return {
        "train_seconds": timer.end - timer.start,
        "steps": final["steps"],
        "train_loss": train_loss,
        "dev_metric": metric,
        "shape": timer.shape,
        "trained": timer.trained,
    }


def _hf_args(spec: dict, work: Path, careful: bool, steps: int):
    from transformers import TrainingArguments

    extra = (
        {"bf16": True, "train_sampling_strategy": "group_by_length", "optim": "adamw_torch_fused"} if careful else {}
    )
    return TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=spec["batch_size"],
        num_train_epochs=1,
        learning_rate=spec["lr"],
        warmup_steps=int(0.1 * steps),
        lr_scheduler_type="linear",
        weight_decay=0.01,
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        logging_steps=5,
        seed=42,
        remove_unused_columns=False,
        disable_tqdm=True,
        **extra,
    )


def _peft(model, spec: dict):
    from peft import LoraConfig, get_peft_model

    if spec["method"] == "full":
        return model
    opts = spec.get("method_options", {})
    targets = opts.get("target_modules", "all-linear")
    task_type = "CAUSAL_LM" if spec["task"] == "causal_lm" else "SEQ_CLS"
    return get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets, task_type=task_type)
    )


def run_hf(spec: dict, work: Path, careful: bool, feats, dev, labels, tok) -> tuple[dict, object]:
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding, Trainer, TrainerCallback

    class Timer(TrainerCallback):
        start = end = None

        def on_step_begin(self, args, state, control, **kw):
            self.start = self.start or time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.end = time.perf_counter()

    model, _ = base_model(spec, labels)
    model = _peft(model, spec)
    if spec["task"] == "causal_lm":
        train = [
            {"input_ids": f["input_ids"], "attention_mask": [1] * len(f["input_ids"]), "labels": f["labels"]}
            for f in feats
        ]
        collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    else:
        train = feats
        collator = DataCollatorWithPadding(tok)
    steps = -(-len(train) // spec["batch_size"])
    timer = Timer()
    trainer = Trainer(
        model=model,
        args=_hf_args(spec, work, careful, steps),
        train_dataset=train,
        data_collator=collator,
        callbacks=[timer],
    )
    trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r] or [
        r["train_loss"] for r in trainer.state.log_history if "train_loss" in r
    ]
    return {
        "train_seconds": timer.end - timer.start,
        "steps": trainer.state.global_step,
        "train_loss": losses[-1],
    }, model


def run_naive(spec: dict, feats, labels, tok) -> tuple[dict, object, list]:
    """The seeds' recipe: every batch padded to max_length, fp32, default AdamW, model dropout on, plain loop; ``naive_steps`` steps."""
    import random

    model, _ = base_model(spec, labels)
    model = _peft(model, spec)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec["lr"], weight_decay=0.01)
    order = list(range(len(feats)))
    random.Random(42).shuffle(order)
    n = spec["batch_size"] * spec["naive_steps"]
    used = [feats[i] for i in order[:n]]
    start = time.perf_counter()
    loss = None
    for s in range(0, len(used), spec["batch_size"]):
        chunk = used[s : s + spec["batch_size"]]
        enc = tok.pad(
            [{"input_ids": f["input_ids"]} for f in chunk],
            padding="max_length",
            max_length=spec["max_length"],
            return_tensors="pt",
        )
        if spec["task"] == "causal_lm":
            lab = torch.full_like(enc["input_ids"], -100)
            for i, f in enumerate(chunk):
                lab[i, : len(f["labels"])] = torch.tensor(f["labels"])
        else:
            lab = torch.tensor([f["labels"] for f in chunk])
        loss = model(**enc, labels=lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad()
    return (
        {"train_seconds": time.perf_counter() - start, "steps": spec["naive_steps"], "train_loss": float(loss)},
        model,
        used,
    )


def dev_metric(spec: dict, model, dev, labels, tok) -> float:
    """Final dev loss (causal LM, fp32) or accuracy (classification): the same function tunelab's report uses."""
    from functools import partial

    from tunelab.data.collate import pad_batch
    from tunelab.training import evaluation

    model.eval()
    with torch.no_grad():
        if spec["task"] == "causal_lm":
            return causal_lm.dev_loss(model, dev, partial(causal_lm.collate, pad_id=tok.pad_token_id))
        return evaluation.evaluate(
            classification.evaluator(dev, labels, partial(pad_batch, pad_id=tok.pad_token_id)), model
        )["accuracy"]


def peak_gflops(seconds: float = 3.0, n: int = 2048) -> float:
    """Best bf16 matmul rate over ``seconds`` of (n x n) @ (n x n) products."""
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def main(side: str, spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(42)
    wall = time.perf_counter()
    if side == "peak":
        Path(out_path).write_text(json.dumps({"peak_gflops": peak_gflops(spec.get("peak_seconds", 3.0))}))
        return
    work = Path(tempfile.mkdtemp(prefix=f"bench-{side}-"))
    os.environ["TUNELAB_CACHE"] = str(work / "cache")  # a cold cache: every side tokenises
    tok, feats, dev, labels = load_data(spec)
    used = feats
    if side == "tunelab":
        out = run_tunelab(spec, work)
        out["rss_mb"] = rss_mb()
        shape, full, trained = out.pop("shape"), spec["method"] == "full", out.pop("trained")
    else:
        if side == "naive":
            out, model, used = run_naive(spec, feats, labels, tok)
        else:
            out, model = run_hf(spec, work, side == "reference", feats, dev, labels, tok)
        out["dev_metric"] = dev_metric(spec, model, dev, labels, tok)
        out["rss_mb"] = rss_mb()
        shape, full, trained = (
            model_shape(model.get_base_model() if hasattr(model, "get_base_model") else model),
            spec["method"] == "full",
            trainable_matmul_params(model),
        )
    counts = token_counts(spec, used)
    out.update(
        counts,
        wall_seconds=time.perf_counter() - wall,
        flops=useful_flops(shape, counts, trained, full),
        ld_preload=os.environ.get("LD_PRELOAD", ""),
    )
    Path(out_path).write_text(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:4])
