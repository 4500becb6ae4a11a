"""Side by side: tunelab vs HF Trainer (+PEFT) on the SST-2 slice of the foundation issue.

Same model (minilm-l6), data (first 4,000 rows of ../shared/data/sst2/train.tsv, full dev.tsv),
3 epochs, batch 32, bf16 autocast, linear schedule with 10% warmup, one torch thread;
lr 5e-5 for full fine-tuning, 1e-3 for LoRA r=8 on query,key,value,dense.

    .venv/bin/python bench/sst2_vs_hf_trainer.py [--methods full,lora] [--threads 1]

Writes bench/results/sst2_classification.md with accuracy, wall time and the tunelab/HF ratios.
Not part of the test suite (timings are machine-dependent).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
ROWS, EPOCHS, BATCH = 4000, 3, 32
LR = {"full": 5e-5, "lora": 1e-3}


def read_tsv(path: Path, limit: int | None = None) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def run_hf(method: str, threads: int) -> dict:
    """HF Trainer configured as a careful user would: bf16, dynamic padding, linear schedule, 10% warmup."""
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from tunelab.models.load import resolve

    torch.set_num_threads(threads)
    path = resolve("minilm-l6").path
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=8,
                lora_alpha=16,
                target_modules=["query", "key", "value", "dense"],
                modules_to_save=["classifier"],
                task_type="SEQ_CLS",
            ),
        )
    tx, ty = read_tsv(DATA / "train.tsv", ROWS)
    dx, dy = read_tsv(DATA / "dev.tsv")
    train = [dict(tok(t, truncation=True, max_length=256), labels=y) for t, y in zip(tx, ty)]
    dev = [dict(tok(t, truncation=True, max_length=256), labels=y) for t, y in zip(dx, dy)]
    steps = EPOCHS * -(-len(train) // BATCH)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=64,
        num_train_epochs=EPOCHS,
        learning_rate=LR[method],
        warmup_steps=int(0.1 * steps),
        lr_scheduler_type="linear",
        bf16=True,
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        logging_steps=50,
        seed=42,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train, eval_dataset=dev, data_collator=DataCollatorWithPadding(tok)
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    pred = trainer.predict(dev)
    acc = float((np.argmax(pred.predictions, -1) == np.array(dy)).mean())
    return {"accuracy": acc, "seconds": seconds}


def run_tunelab(method: str, threads: int) -> dict:
    from tunelab import config
    from tunelab.recipes import finetune

    out = Path(tempfile.mkdtemp()) / "run"
    overrides = [
        "model.name=minilm-l6",
        f"data.train={DATA / 'train.tsv'}",
        f"data.dev={DATA / 'dev.tsv'}",
        "data.text_column=sentence",
        f"data.max_train_rows={ROWS}",
        f"method={method}",
        f"train.epochs={EPOCHS}",
        f"train.batch_size={BATCH}",
        f"train.lr={LR[method]}",
        f"train.threads={threads}",
        "train.precision=bf16",
        f"output_dir={out}",
    ]
    if method == "lora":
        overrides.append("method.target_modules=[query,key,value,dense]")
    final = finetune.run(config.load(None, overrides), quiet=True, log=lambda m: None)
    return {"accuracy": final["dev"]["accuracy"], "seconds": final["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="full,lora")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    lines = [
        "# SST-2 classification: tunelab vs HF Trainer",
        "",
        f"minilm-l6, first {ROWS} rows of sst2/train.tsv, full sst2/dev.tsv, {EPOCHS} epochs, batch {BATCH}, bf16, "
        f"{args.threads} thread(s). Time = training wall time (tunelab's includes its per-epoch dev evaluations).",
        "",
        "| method | HF acc | tunelab acc | HF s | tunelab s | speed ratio (HF s / tunelab s) |",
        "|---|---|---|---|---|---|",
    ]
    for method in args.methods.split(","):
        hf, tl = run_hf(method, args.threads), run_tunelab(method, args.threads)
        lines.append(
            f"| {method} | {hf['accuracy']:.4f} | {tl['accuracy']:.4f} | {hf['seconds']:.0f} | {tl['seconds']:.0f} | {hf['seconds'] / tl['seconds']:.2f} |"
        )
        print(lines[-1], flush=True)
    out = ROOT / "bench" / "results" / "sst2_classification.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
