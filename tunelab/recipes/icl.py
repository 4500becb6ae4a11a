"""`tunelab icl CONFIG`: zero- and few-shot classification by prompting, no weights change.

config -> train rows (the demonstration pool) and dev rows -> the LM and the tokenised verbalizer -> for each
selection strategy and seed: demonstrations per input -> label scores of every input and of the content-free
inputs in the same prompt -> metrics uncalibrated and calibrated -> icl.json and icl.md (mean and std over seeds).
"""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

from tunelab import config as config_mod
from tunelab import runs
from tunelab.errors import ConfigError, DataError
from tunelab.prompting import calibration, demos, scoring
from tunelab.prompting import verbalizer as vb
from tunelab.recipes import fewshot, finetune
from tunelab.tasks import TASKS
from tunelab.tasks.classification import metrics as class_metrics


def run(cfg: config_mod.RunConfig, log=print) -> dict:
    """Run every configured setting on the dev rows; write icl.json and icl.md into ``cfg.output_dir``."""
    if cfg.prompt.verbalizer is None:
        raise ConfigError(
            "prompt.verbalizer: `tunelab icl` needs label words, e.g. prompt.verbalizer={0: [bad], 1: [good]}"
        )
    task = TASKS[cfg.task.name]
    finetune.seed_everything(0, cfg.train.threads)
    splits = finetune.read_splits(cfg, task, log)
    labels = task.label_space(splits["train"], cfg.data.train)
    unknown = [r for r in splits["dev"] if r.label not in labels]
    if unknown:
        raise DataError(
            f"{cfg.data.dev or cfg.data.train}:{unknown[0].line}: label '{unknown[0].label}' does not occur in the "
            f"training rows; known labels: {', '.join(labels)}"
        )
    scorer = load_scorer(cfg, labels, log)
    out = Path(cfg.output_dir)
    runs.check_writable_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    embed = Embedder(cfg.icl.embedding_model, log) if _needs_embeddings(cfg.icl) else None
    summary = {
        "model": cfg.model.name,
        "output_dir": str(out),
        "dev": cfg.data.dev or f"{cfg.data.train} (dev split)",
        "dev_rows": len(splits["dev"]),
        "shots": cfg.icl.shots,
        "template": cfg.prompt.template,
        "verbalizer": cfg.prompt.verbalizer,
        "results": [],
    }
    (out / "config.yaml").write_text(config_mod.dump(cfg), encoding="utf-8")
    for strategy in ["zero-shot"] if cfg.icl.shots == 0 else cfg.icl.selection:
        summary["results"] += setting_result(scorer, cfg.icl, splits, strategy, embed, log)
        write(out, summary)  # after each strategy: a long run keeps what it measured
    summary["results"] += fewshot.rows(cfg, splits, log, summarize)
    write(out, summary)
    return summary


def write(out: Path, summary: dict) -> None:
    """icl.json and icl.md from the results so far."""
    (out / "icl.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    (out / "icl.md").write_text(markdown(summary), encoding="utf-8")


def load_scorer(cfg: config_mod.RunConfig, labels: list[str], log) -> scoring.Scorer:
    """The LM (causal or masked, per prompt.lm) with its tokenised verbalizer."""
    from tunelab.models import load as model_load

    src = model_load.resolve(cfg.model.name, cfg.model.gguf_file, cfg.model.revision)
    tokenizer = model_load.load_tokenizer(src)
    kind = scoring.lm_kind(cfg.prompt.lm, _architectures(src))
    model, _ = model_load.load_model(src, scoring.auto_class(kind))
    model.eval()
    verbalizer = vb.build_verbalizer(cfg.prompt.verbalizer, labels, tokenizer, cfg.prompt.word_prefix)
    shown = {label: cfg.prompt.verbalizer[label] for label in verbalizer.labels}
    log(f"{cfg.model.name}: {kind} LM; label words: {shown}")
    return scoring.Scorer(model, tokenizer, verbalizer, cfg.prompt, kind, cfg.icl.batch_size)


def _architectures(src) -> list[str]:
    from tunelab.models import load as model_load

    if src.gguf_file:  # GGUF models here are causal LMs (llama.cpp's format)
        return ["LlamaForCausalLM"]
    return list(model_load.load_config(src.path).architectures or [])


def _needs_embeddings(icl) -> bool:
    return icl.shots > 0 and ("nearest" in icl.selection or icl.order == "similarity")


def setting_result(scorer, icl, splits: dict, strategy: str, embed, log) -> list[dict]:
    """Rows of the results table for one strategy: uncalibrated and/or calibrated, mean and std over seeds."""
    seeds = [icl.seeds[0]] if strategy == "zero-shot" else icl.seeds
    per_seed = {flag: [] for flag in icl.calibrate}
    for seed in seeds:
        probs, p_cf = seed_run(scorer, icl, splits, (strategy, seed), embed)
        gold = [scorer.verbalizer.labels.index(r.label) for r in splits["dev"]]
        for flag in icl.calibrate:
            final = calibration.calibrate(probs.log(), p_cf) if flag else probs
            m = class_metrics(gold, final.argmax(-1).tolist(), list(scorer.verbalizer.labels))
            per_seed[flag].append({"seed": seed, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
            log(f"{strategy} k={icl.shots} seed {seed} calibrated={flag}: accuracy {m['accuracy']:.4f}")
    return [summarize(strategy, flag, icl.shots, rows) for flag, rows in per_seed.items()]


def summarize(strategy: str, calibrated: bool | None, shots: int, rows: list[dict]) -> dict:
    """Mean and standard deviation (sample std; 0 for one seed) of each metric over seeds (``calibrated`` None: not
    a prompting row; ``shots``: demonstrations, or the labelled rows a fine-tuning row trained on)."""
    out = {"strategy": strategy, "calibrated": calibrated, "shots": shots, "seeds": rows}
    for key in ("accuracy", "macro_f1"):
        values = [r[key] for r in rows]
        out[key] = statistics.fmean(values)
        out[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def seed_run(scorer, icl, splits: dict, setting: tuple[str, int], embed):
    """(probabilities (dev, labels), content-free probabilities (dev, labels)) for one strategy and seed."""
    import torch

    strategy, seed = setting
    rng = random.Random(seed)
    train, dev = splits["train"], splits["dev"]
    pool_idx = (
        demos.sample_per_class([r.label for r in train], icl.pool_per_class, seed)
        if icl.pool_per_class
        else list(range(len(train)))
    )
    pool = [train[i] for i in pool_idx]
    chosen = choose(icl, strategy, pool, dev, (rng, embed))
    probs = torch.empty(len(dev), len(scorer.verbalizer.labels))
    p_cf = torch.empty_like(probs)
    groups: dict[tuple, list[int]] = {}
    for i, demo in enumerate(chosen):
        groups.setdefault(tuple(demo), []).append(i)
    for demo, members in groups.items():
        prefix = scoring.prefix_text(scorer.prompt, [_demo_text(scorer, pool[j]) for j in demo])
        free = [(t, t if dev[0].text_pair is not None else None) for t in icl.content_free]
        inputs = [(dev[i].text, dev[i].text_pair) for i in members] + free
        scores = scoring.score(scorer, prefix, inputs)  # (members + content-free, labels)
        probs[members] = scores[: len(members)].softmax(-1)
        p_cf[members] = calibration.content_free_probs(scores[len(members) :])
    return probs, p_cf


def choose(icl, strategy: str, pool: list, dev: list, tools) -> list[list[int]]:
    """Pool indices of the demonstrations of each dev row, in prompt order."""
    rng, embed = tools
    if strategy == "zero-shot":
        return [[] for _ in dev]
    labels = [r.label for r in pool]
    sims = embed.similarity([r.text for r in dev], [r.text for r in pool]) if embed is not None else None
    if strategy != "nearest" and icl.order == "random":  # one draw shared by every input (one prompt prefix)
        shared = demos.order(demos.select(strategy, labels, icl.shots, rng), "random", None, rng)
        return [shared for _ in dev]
    picked = []
    shared = None if strategy == "nearest" else demos.select(strategy, labels, icl.shots, rng)
    for i in range(len(dev)):
        row = sims[i] if sims is not None else None
        chosen = shared if shared is not None else demos.select(strategy, labels, icl.shots, rng, row)
        picked.append(demos.order(chosen, icl.order, row, rng))
    return picked


def _demo_text(scorer, row) -> str:
    word = scorer.verbalizer.first_words[scorer.verbalizer.labels.index(row.label)]
    return vb.demonstration(scorer.prompt.template, row.text, row.text_pair, word, scorer.prompt.word_prefix)


class Embedder:
    """Sentence embeddings (mean-pooled, L2-normalised) from an encoder, cached per text."""

    def __init__(self, name: str, log):
        from tunelab.models import load as model_load

        src = model_load.resolve(name)
        self.tokenizer = model_load.load_tokenizer(src)
        self.model, _ = model_load.load_model(src, "AutoModel")
        self.model.eval()
        self.cache: dict[str, object] = {}
        log(f"embeddings for demonstration selection: {name}")

    def encode(self, texts: list[str]):
        import torch

        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        with torch.no_grad():
            for s in range(0, len(todo), 64):
                batch = todo[s : s + 64]
                enc = self.tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state  # (batch, seq, hidden)
                mask = enc["attention_mask"].unsqueeze(-1).float()
                vecs = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
                self.cache.update(zip(batch, vecs))
        return torch.stack([self.cache[t] for t in texts])

    def similarity(self, queries: list[str], pool: list[str]) -> list[list[float]]:
        """Cosine similarity (queries, pool) as nested lists."""
        return (self.encode(queries) @ self.encode(pool).T).tolist()


def markdown(summary: dict) -> str:
    """The results table: one row per strategy and calibration, mean ± std over seeds."""
    lines = [
        f"# In-context learning: {summary['model']}, k = {summary['shots']}",
        "",
        f"dev: {summary['dev']} ({summary['dev_rows']} rows); template `{summary['template']!r}`",
        "",
        "| strategy | calibrated | seeds | accuracy (mean ± std) | macro-F1 (mean ± std) |",
        "|---|---|---|---|---|",
    ]
    for r in summary["results"]:
        calibrated = "-" if r["calibrated"] is None else "yes" if r["calibrated"] else "no"
        lines.append(
            f"| {r['strategy']} | {calibrated} | {len(r['seeds'])} | "
            f"{r['accuracy']:.4f} ± {r['accuracy_std']:.4f} | {r['macro_f1']:.4f} ± {r['macro_f1_std']:.4f} |"
        )
    return "\n".join(lines) + "\n"
