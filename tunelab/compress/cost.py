"""What a compression or export step costs, measured on the run's own dev data: dev metrics, latency and size.

Latency is measured here, on this machine, with the thread count in force: batch 1 (median milliseconds per dev
example, its own length, no padding) and batched (dev examples per second at ``batch_size``). Every record
carries the CPU model, flags and thread count (``hardware.report``), so numbers from different machines are
never compared blindly.
"""

from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from tunelab.training import evaluation
from tunelab.training.evaluation import Evaluator
from tunelab.training.objective import Objective

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx", ".data", ".gguf")


@dataclass
class DevData:
    """The run's dev split as its task prepares it for training, and the task's own evaluation and loss."""

    features: list[dict]  # encoded dev examples, labels included
    collate: Callable[[list[dict]], dict]
    evaluator: Evaluator  # the task's dev evaluation during training (Prepared.evaluate)
    objective: Objective  # the task's training objective (forward, pure loss, item count)
    train: list[dict] | None = None  # encoded training examples, when asked for (pruning importance, recovery)

    def evaluate(self, model) -> dict:
        """Dev metrics of ``model`` (torch, or a back-end wrapper answering the same call)."""
        return evaluation.evaluate(self.evaluator, model)

    def loss(self, model, batch: dict):
        """(summed loss, items) of ``model`` on ``batch``: the objective's forward, then its pure loss."""
        return self.objective.loss(self.objective.forward(model, batch), batch)


def dev_data(
    cfg, tokenizer, labels, log: Callable[[str], None], max_rows: int | None = None, train_rows: int = 0
) -> DevData:
    """The run's dev split (the rows training evaluated on: the dev file, or the seeded split of train), encoded by
    the task's ``prepare`` exactly as training encoded it.

    With ``train_rows``, also the first that many training rows (never dev rows), prepared the same way.
    """
    from tunelab.recipes import finetune
    from tunelab.tasks import TASKS

    task = TASKS[cfg.task.name]
    cfg = cfg.model_copy(deep=True)
    cfg.speed.cache = False  # encoding a dev split is quick; never mix a compressed run's cache with training's
    if max_rows:
        cfg.data.max_dev_rows = min(max_rows, cfg.data.max_dev_rows or max_rows)
    splits = finetune.read_splits(cfg, task, _silent)
    dev, train = splits["dev"], splits["train"][:train_rows] or splits["dev"][:1]
    prepared = task.prepare(cfg, tokenizer, labels, {"train": train, "dev": dev}, _silent)
    finetune.add_user_metrics(cfg, prepared)  # the run's eval.metrics too: train.metric may name one
    return DevData(
        prepared.features["dev"],
        prepared.collate,
        prepared.evaluate,
        prepared.objective,
        prepared.features["train"] if train_rows else None,
    )


def _silent(_msg: str) -> None:
    pass


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k in MODEL_INPUTS}


@torch.no_grad()
def latency(model, dev: DevData, n: int = 32, batch_size: int = 32, warmup: int = 3, batched_n: int = 256) -> dict:
    """Batch-1 latency (median and p90 ms over the first ``n`` dev examples) and batched throughput (examples/s over
    the first ``batched_n`` dev examples in padded batches of ``batch_size``)."""
    feats = dev.features[: max(batched_n, batch_size)]
    singles = [model_inputs(dev.collate([f])) for f in feats[:n]]
    for inputs in singles[:warmup]:
        model(**inputs)
    times = []
    for inputs in singles:
        start = time.perf_counter()
        model(**inputs)
        times.append((time.perf_counter() - start) * 1000)
    batches = [model_inputs(dev.collate(feats[s : s + batch_size])) for s in range(0, len(feats), batch_size)]
    model(**batches[0])  # warm-up at the batched shape
    start = time.perf_counter()
    for inputs in batches:
        model(**inputs)
    elapsed = time.perf_counter() - start
    times.sort()
    return {
        "batch1_ms": round(statistics.median(times), 3),
        "batch1_p90_ms": round(times[int(0.9 * (len(times) - 1))], 3),
        "batch1_examples": len(times),
        "batched_examples_per_s": round(len(feats) / elapsed, 2),
        "batch_size": batch_size,
    }


@torch.no_grad()
def paired_latency(models: dict, dev: DevData, n: int = 64, batch_size: int = 32, rounds: int = 3) -> dict[str, dict]:
    """Batch-1 and batched latency of several models measured interleaved (example by example, model by model), so a
    busy machine slows every model alike: median ms per example and median ms per batch, for each model."""
    singles = [model_inputs(dev.collate([f])) for f in dev.features[:n]]
    batches = [
        model_inputs(dev.collate(dev.features[s : s + batch_size]))
        for s in range(0, min(len(dev.features), 8 * batch_size), batch_size)
    ]
    times: dict[str, dict[str, list]] = {name: {"b1": [], "batched": []} for name in models}
    for model in models.values():  # warm-up
        model(**singles[0])
        model(**batches[0])
    for _ in range(rounds):
        for kind, inputs in (("b1", singles), ("batched", batches)):
            for x in inputs:
                for name, model in models.items():
                    start = time.perf_counter()
                    model(**x)
                    times[name][kind].append((time.perf_counter() - start) * 1000)
    return {
        name: {
            "batch1_ms": round(statistics.median(t["b1"]), 3),
            "batch_ms": round(statistics.median(t["batched"]), 3),
            "batch_size": batch_size,
            "examples": len(singles),
            "batches": len(batches),
            "rounds": rounds,
        }
        for name, t in times.items()
    }


def serialized_bytes(model) -> int:
    """Bytes of the model's weights as torch.save writes its state dict (quantized tensors at their stored size)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def files_bytes(folder: Path) -> int:
    """Bytes of the weight files in a folder (tokenizer and config files excluded)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def headline(metrics: dict) -> dict:
    """The plain numbers of a metrics dict (per-class tables and samples left out)."""
    return {
        k: round(float(v), 6) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def measure(model, dev: DevData, size_bytes: int, *, latency_n: int = 32, batch_size: int = 32) -> dict:
    """Dev metrics, latency and size of one model (torch or a back-end wrapper with the same call signature)."""
    metrics = dev.evaluate(model)
    return {
        "dev": headline(metrics),
        **latency(model, dev, latency_n, batch_size),
        "size_mb": round(size_bytes / 2**20, 3),
    }


def compare(source: dict, result: dict, metric: str) -> list[tuple[str, str, str, str]]:
    """Rows (what, source, result, change) for the printed table and cost.md."""
    rows = []
    for key in [metric] + [k for k in result["dev"] if k != metric]:
        if key in source["dev"] and key in result["dev"]:
            a, b = source["dev"][key], result["dev"][key]
            change = (
                f"{100 * (b - a):+.2f} pt" if 0 <= a <= 1 and 0 <= b <= 1 and "loss" not in key else f"{b - a:+.4f}"
            )
            rows.append((f"dev {key}", f"{a:.4f}", f"{b:.4f}", change))
    a, b = source["batch1_ms"], result["batch1_ms"]
    rows.append(("latency, batch 1 (ms, median)", f"{a:.2f}", f"{b:.2f}", f"{a / max(b, 1e-9):.2f}x speed-up"))
    a, b = source["batched_examples_per_s"], result["batched_examples_per_s"]
    rows.append(
        (f"throughput, batch {result['batch_size']} (examples/s)", f"{a:.1f}", f"{b:.1f}", f"{b / max(a, 1e-9):.2f}x")
    )
    a, b = source["size_mb"], result["size_mb"]
    rows.append(("size (MB)", f"{a:.1f}", f"{b:.1f}", f"{a / max(b, 1e-9):.2f}x smaller"))
    return rows


def table(rows: list[tuple[str, ...]], header: tuple[str, ...] = ("", "source", "result", "change")) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def machine() -> dict:
    """CPU model, flags, threads, load and versions, recorded with every timing (the facts `tunelab doctor` shows)."""
    import os

    from tunelab import hardware, launch

    info = hardware.cpu_info()
    return {
        "cpu": info.model,
        "flags": sorted(info.flags),
        "physical_cores": hardware.physical_cores(),
        "torch_threads": torch.get_num_threads(),
        "matmul_gflops": hardware.measured_speedup(info),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "tcmalloc_loaded": launch.tcmalloc_loaded(),
        "versions": hardware.versions(("torchao", "onnx", "onnxruntime", "gguf", "llama-cpp-python")),
    }
