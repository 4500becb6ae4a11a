"""`tunelab prune RUN OUT`: remove weights (magnitude) or whole heads and FFN neurons (structured), optionally recover.

    --method magnitude --sparsity 0.5    zero the 50% smallest weights of each linear layer in the transformer
                                         stack. The matrices stay dense: no smaller file, no faster dense kernel;
                                         the table says so rather than implying a gain.
    --method structured --heads 0.3 --ffn 0.2
                                         remove 30% of the attention heads and 20% of the FFN neurons, ranked by
                                         first-order Taylor importance on training rows (never dev rows), so the
                                         matrices really shrink (structure.py).
    --recover-steps N                    then fine-tune the whole pruned model for N steps with the run's own
                                         training recipe settings through THE training loop (training/loop.py);
                                         magnitude-pruned zeros are kept at zero by a loop callback.

The command also evaluates the intermediate levels (accuracy-vs-sparsity table and plot, before recovery) and
writes a ``pruned`` run folder (model.safetensors + the linear shapes needed to rebuild it).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import torch

from tunelab.compress import structure
from tunelab.errors import TunelabError
from tunelab.training import loop
from tunelab.training.callbacks import Callback, Context

METHODS = ("magnitude", "structured")
WEIGHTS_FILE = "model.safetensors"
BACKENDS = ("torch",)


class KeepZeros(Callback):
    """Re-applies the magnitude masks after every optimizer step, so recovery never revives a pruned weight.

    The masks are fixed for the run (made before training, rebuilt by the caller), so there is no state to save."""

    def __init__(self, masks: dict[str, torch.Tensor]):
        self.masks = masks

    def on_before_zero_grad(self, ctx: Context) -> None:
        structure.apply_masks(ctx.model, self.masks)


def save(model, tokenizer, model_dir: Path, info: dict) -> dict:
    from safetensors.torch import save_model

    from tunelab.compress.quantize import linear_shapes

    model.config.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    save_model(model, str(model_dir / WEIGHTS_FILE))  # handles tied embeddings (save_file would refuse them)
    return {"format": "pruned", **info, "shapes": linear_shapes(model)}


def load(run_dir: Path, cfg, labels, info: dict, backend: str):
    """Rebuild a pruned run: architecture from config.json, linear shapes from the record, then the stored weights."""
    from safetensors.torch import load_model

    from tunelab import runs
    from tunelab.models import load as model_load
    from tunelab.tasks import TASKS

    model_dir = Path(run_dir) / "model"
    model = model_load.build_from_config(model_dir, TASKS[cfg.task.name].model_class(cfg))
    structure.reshape_linears(model, info["shapes"])
    missing, unexpected = load_model(model, str(model_dir / WEIGHTS_FILE), strict=False)
    if unexpected or [k for k in missing if not _tied(model, k)]:
        raise TunelabError(
            f"{run_dir}: stored weights do not fit the recorded shapes (e.g. {(unexpected or missing)[0]})"
        )
    tokenizer = model_load.load_tokenizer(model_load.Source(str(model_dir)))
    return runs.LoadedRun(cfg, model.eval(), tokenizer, labels, [], backend=backend)


def _tied(model, key: str) -> bool:
    """A key save_model left out because it shares memory with another (tied LM head)."""
    return key.endswith("lm_head.weight") and getattr(model.config, "tie_word_embeddings", False)


def _batches(features: list[dict], collate, batch_size: int = 16):
    return [collate(features[s : s + batch_size]) for s in range(0, len(features), batch_size)]


def magnitude(model, sparsity: float) -> tuple[dict, dict[str, torch.Tensor]]:
    from tunelab.compress.quantize import target_linears

    names = target_linears(model)
    masks = structure.magnitude_masks(model, names, sparsity)
    structure.apply_masks(model, masks)
    return {"sparsity": round(structure.sparsity_of(model, names), 4)}, masks


def structured(model, scores: dict, heads: float, ffn: float) -> dict:
    layout = structure.layout_for(model)
    before = structure.count_units(model, layout)
    if heads and layout.heads_out is None:
        raise TunelabError(
            f"--heads: {model.config.model_type} attention shares key/value heads across query heads; "
            "prune FFN neurons (--ffn) instead"
        )
    if heads:
        structure.prune_units(model, layout, structure.choose_kept(scores["heads"], heads), "heads")
    if ffn:
        structure.prune_units(model, layout, structure.choose_kept(scores["ffn"], ffn), "ffn")
    after = structure.count_units(model, layout)
    return {k: f"{after[k]}/{before[k]}" for k in before}


def sweep_levels(target: float, steps: int = 5) -> list[float]:
    """Evenly spaced levels from 0 to ``target`` (inclusive) for the accuracy-vs-sparsity table."""
    return [round(target * i / steps, 4) for i in range(steps + 1)] if target > 0 else [0.0]


def sweep(model, dev, method: str, target: dict, scores: dict | None, metric: str, log) -> list[dict]:
    """Dev metric at evenly spaced levels up to the target (each on a fresh copy, before recovery)."""
    rows = []
    main = "sparsity" if method == "magnitude" else ("heads" if target["heads"] else "ffn")
    for level in sweep_levels(target[main]):
        trial = copy.deepcopy(model)
        scale = level / target[main] if target[main] else 0.0
        if method == "magnitude":
            what = magnitude(trial, level)[0]
        else:
            what = structured(trial, scores, target["heads"] * scale, target["ffn"] * scale)
        value = dev.evaluate(trial.eval())[metric]
        params = sum(p.numel() for p in trial.parameters())
        rows.append({"level": level, **what, metric: round(float(value), 6), "parameters": params})
        log(f"prune: {main} {level:.2f}: dev {metric} {value:.4f}")
    return rows


def recover(model, dev, cfg, steps: int, lr: float | None, work_dir: Path, masks: dict | None, log) -> dict:
    """Fine-tune every weight of the pruned model for ``steps`` steps through the one training loop."""
    from tunelab.evaluation import custom
    from tunelab.tasks import TASKS

    work_dir.mkdir(parents=True, exist_ok=True)
    train_cfg = cfg.train.model_copy(
        update={
            "max_steps": steps,
            "lr": lr or cfg.train.lr,
            "eval_every": None,
            "save_every": None,
            "early_stopping_patience": None,
            "llrd": None,
            "gradual_unfreeze_every": None,
        }
    )
    for p in model.parameters():
        p.requires_grad_(True)
    job = loop.Job(
        model,
        dev.train,
        dev.objective,
        dev.collate,
        train_cfg,
        work_dir,
        evaluator=dev.evaluator,
        metric=custom.chosen(TASKS[cfg.task.name], cfg.train.metric, custom.load(cfg.eval.metrics)),
        callbacks=[KeepZeros(masks)] if masks else [],
        log=log,
        quiet=True,
    )
    state = loop.train(job)
    loop.load_best(model, work_dir)
    for p in model.parameters():
        p.requires_grad_(False)
    return {"steps": state.step, "lr": train_cfg.lr, "best_step": state.best_step}


def plot(rows: list[dict], metric: str, recovered: float | None, path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["level"] for r in rows], [r[metric] for r in rows], marker="o", label="pruned, no recovery")
    if recovered is not None:
        ax.scatter([rows[-1]["level"]], [recovered], color="C2", marker="*", s=140, label="after recovery", zorder=3)
    ax.set_xlabel(label)
    ax.set_ylabel(f"dev {metric}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    src: str | Path,
    out: str | Path,
    *,
    method: str,
    sparsity: float = 0.0,
    heads: float = 0.0,
    ffn: float = 0.0,
    recover_steps: int = 0,
    recover_lr: float | None = None,
    importance_rows: int = 256,
    dev_rows: int | None = None,
    latency_n: int = 32,
    batch_size: int = 32,
    log: Callable[[str], None] = print,
) -> dict:
    """Prune the run ``src`` into the new run folder ``out``; returns the cost record (source vs result, sweep)."""
    from tunelab.compress import cost, output

    target = _check(method, sparsity, heads, ffn, recover_steps)
    loaded, model, _ = output.load_source(src, "prune")
    metric = loaded.cfg.train.metric or "loss"
    with output.Output(out, src) as result:
        need_train = max(importance_rows if method == "structured" else 0, loaded.cfg.train.batch_size * recover_steps)
        dev = cost.dev_data(loaded.cfg, loaded.tokenizer, loaded.labels, log, dev_rows, need_train)
        log(f"prune: measuring the source on {len(dev.features)} dev examples")
        before = cost.measure(model, dev, cost.serialized_bytes(model), latency_n=latency_n, batch_size=batch_size)
        scores = None
        if method == "structured":
            log(
                f"prune: Taylor importance of heads and FFN neurons on {min(importance_rows, len(dev.train))} training rows"
            )
            scores = structure.taylor_importance(
                model, structure.layout_for(model), _batches(dev.train[:importance_rows], dev.collate), dev.loss
            )
        rows = sweep(model, dev, method, target, scores, metric, log)
        masks = None
        if method == "magnitude":
            what, masks = magnitude(model, sparsity)
        else:
            what = structured(model, scores, heads, ffn)
        recovery = None
        if recover_steps:
            if not dev.train:
                raise TunelabError(f"{src}: no training rows to recover with")
            log(f"prune: recovery fine-tune, {recover_steps} steps")
            recovery = recover(model, dev, loaded.cfg, recover_steps, recover_lr, result.tmp / "recovery", masks, log)
            _tidy_recovery(result.tmp / "recovery")
        info = save(
            model,
            loaded.tokenizer,
            result.model_dir,
            {"method": method, **target, "result": what, "recovery": recovery},
        )
        reloaded = load(result.tmp, loaded.cfg, loaded.labels, info, "torch")
        after = cost.measure(
            reloaded.model, dev, cost.files_bytes(result.model_dir), latency_n=latency_n, batch_size=batch_size
        )
        after["parameters"] = sum(p.numel() for p in reloaded.model.parameters())
        before["parameters"] = rows[0]["parameters"]  # level 0: the unpruned model
        record = {
            "step": {"prune": {"method": method, **target, "recover_steps": recover_steps}},
            "source": before,
            "result": after,
            "pruned": what,
            "recovery": recovery,
            "sweep": rows,
            "machine": cost.machine(),
        }
        label = (
            "fraction of weights zeroed"
            if method == "magnitude"
            else ("fraction of heads removed" if heads else "fraction of FFN neurons removed")
        )
        plot(rows, metric, after["dev"].get(metric) if recover_steps else None, result.tmp / "prune.png", label)
        md = _report(f"prune ({method}): {Path(src).name} -> {Path(out).name}", record, metric)
        log("\n" + cost.table(cost.compare(before, after, metric)))
        result.finish(info, record, md, after["dev"])
    return record


def _check(method: str, sparsity: float, heads: float, ffn: float, recover_steps: int) -> dict:
    if method not in METHODS:
        raise TunelabError(f"--method {method}: unknown; choose {' or '.join(METHODS)}")
    for name, value in (("--sparsity", sparsity), ("--heads", heads), ("--ffn", ffn)):
        if not 0 <= value < 1:
            raise TunelabError(f"{name} {value}: must be a fraction in [0, 1)")
    if method == "magnitude" and (heads or ffn or not sparsity):
        raise TunelabError("--method magnitude takes --sparsity (fraction of weights to zero), not --heads/--ffn")
    if method == "structured" and (sparsity or not (heads or ffn)):
        raise TunelabError("--method structured takes --heads and/or --ffn (fractions to remove), not --sparsity")
    if recover_steps < 0:
        raise TunelabError(f"--recover-steps {recover_steps}: must be >= 0")
    return {"sparsity": sparsity} if method == "magnitude" else {"heads": heads, "ffn": ffn}


def _tidy_recovery(work_dir: Path) -> None:
    """Keep the recovery's metrics log; its checkpoints are the weights already saved in model/."""
    import shutil

    for name in ("checkpoints", "best"):
        shutil.rmtree(work_dir / name, ignore_errors=True)


def _report(title: str, record: dict, metric: str) -> str:
    """report.md of a prune: the before/after cost table, what was removed, and the sweep's accuracy per level."""
    from tunelab.compress import cost, output

    method, before, after = record["step"]["prune"]["method"], record["source"], record["result"]
    rows, recovery = record["sweep"], record["recovery"]
    md = output.report(
        title,
        cost.compare(before, after, metric),
        record["machine"],
        [
            f"result: {record['pruned']}",
            f"parameters: {before['parameters']:,} -> {after['parameters']:,}",
            f"recovery: {recovery}" if recovery else "no recovery fine-tune",
            *(
                ["magnitude pruning keeps dense matrices: the zeros save neither storage nor time with dense kernels"]
                if method == "magnitude"
                else []
            ),
        ],
    )
    keys = [k for k in rows[0] if k not in ("level", metric, "parameters")]
    table = cost.table(
        [(f"{r['level']:.2f}", *[str(r[k]) for k in keys], f"{r[metric]:.4f}", f"{r['parameters']:,}") for r in rows],
        ("level", *keys, f"dev {metric} (no recovery)", "parameters"),
    )
    return md + "\n\n## Accuracy vs sparsity\n\n" + table + "\n\n![accuracy vs sparsity](prune.png)"
