"""Fine-tuning on the same k labelled rows `tunelab icl` draws its demonstrations from (``icl.finetune``).

For each seed, the pool (``icl.pool_per_class`` rows per class) is written to ``output_dir/finetune-seed<N>/`` with
the dev rows, and the config's ``method:`` and ``train:`` settings train on it with a new classification head
(``head``) and/or with the template and verbalizer as the head (``prompt``, task prompt_classification): the rows
of the side-by-side table next to zero-shot and in-context learning.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab import config as config_mod
from tunelab.errors import ConfigError
from tunelab.prompting import demos

TASK_OF = {"head": "classification", "prompt": "prompt_classification"}
NAME_OF = {"head": "fine-tuning, new head", "prompt": "fine-tuning, prompt head"}


def rows(cfg: config_mod.RunConfig, splits: dict, log, summarize) -> list[dict]:
    """One results row per ``icl.finetune`` kind: dev accuracy and macro-F1 per seed, summarised by ``summarize``."""
    icl = cfg.icl
    if not icl.finetune:
        return []
    if icl.pool_per_class is None:
        raise ConfigError("icl.finetune: needs icl.pool_per_class (the k labelled rows fine-tuning trains on)")
    per_kind: dict[str, list[dict]] = {kind: [] for kind in icl.finetune}
    for seed in icl.seeds:
        folder = Path(cfg.output_dir) / f"finetune-seed{seed}"
        pool = [
            splits["train"][i]
            for i in demos.sample_per_class([r.label for r in splits["train"]], icl.pool_per_class, seed)
        ]
        train, dev = write_rows(folder / "train.jsonl", pool), write_rows(folder / "dev.jsonl", splits["dev"])
        for kind in icl.finetune:
            final = train_one(cfg, (kind, seed), (train, dev, pool[0].text_pair is not None), folder / kind, log)
            per_kind[kind].append({"seed": seed, "accuracy": final["accuracy"], "macro_f1": final["macro_f1"]})
            log(f"{NAME_OF[kind]} seed {seed}: accuracy {final['accuracy']:.4f}")
    return [summarize(NAME_OF[kind], None, len(pool), seeds) for kind, seeds in per_kind.items()]


def train_one(cfg: config_mod.RunConfig, setting: tuple[str, int], files: tuple, out: Path, log) -> dict:
    """Dev metrics of one fine-tuning run on the written pool (``setting``: kind, seed; ``files``: train, dev, pairs)."""
    from tunelab.recipes import finetune

    kind, seed = setting
    train, dev, pairs = files
    overrides = [
        f"task={TASK_OF[kind]}",
        f"data.train={train}",
        f"data.dev={dev}",
        "data.format=jsonl",
        "data.text_column=text",
        f"data.text_pair_column={'text_pair' if pairs else 'null'}",
        "data.label_column=label",
        "data.max_train_rows=null",
        "data.max_dev_rows=null",
        f"train.seed={seed}",
        f"output_dir={out}",
    ]
    return finetune.run(config_mod.with_overrides(cfg, overrides, "icl.finetune"), quiet=True, log=log)["dev"]


def write_rows(path: Path, rows: list) -> Path:
    """Rows as JSON lines (text, text_pair, label): the files the fine-tuning runs read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            item = {"text": r.text, "label": r.label}
            if r.text_pair is not None:
                item["text_pair"] = r.text_pair
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path
