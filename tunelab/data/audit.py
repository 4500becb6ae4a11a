"""`tunelab data audit`: what is wrong with the data, and what it will do to the model, with file:line references.

``run(inputs, options)`` returns an ``Audit``: summary statistics plus a list of findings, each with the items
it concerns (indices into ``inputs.items()``), which ``clean`` acts on and the report lists as file:line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tunelab.data import checks
from tunelab.data.corpus import Inputs, Item

CHECKS = (
    "unreadable",
    "duplicates",
    "near_duplicates",
    "leakage",
    "encoding",
    "lengths",
    "language",
    "label_errors",
    "tags",
    "instructions",
)


@dataclass
class Options:
    near_threshold: float = 0.8  # character 5-gram Jaccard at or above which two texts are near duplicates
    skip: frozenset = frozenset()  # checks (from CHECKS) not to run
    label_model: str = "minilm-l6"  # comma-separated models whose embeddings feed the label-error probe (or fine-tuned)
    label_probe: str = "embedding"  # embedding, finetune or both, comma-separated (labelnoise.find)
    label_cutoff: str = "posterior"  # posterior, calibrated, estimate or prune (labelnoise.label_issues)
    folds: int = 5
    seed: int = 0
    log: object = None


@dataclass
class Finding:
    check: str  # machine name, e.g. exact_duplicates
    title: str
    effect: str  # what it does to training or evaluation
    groups: list[list[int]] = field(default_factory=list)  # item indices; one group per duplicate set, or one item each
    lines: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, reason) for rows that are not items
    detail: dict = field(default_factory=dict)  # per-group extra values (e.g. similarity), keyed by group position
    severity: str = "warning"

    @property
    def count(self) -> int:
        """Rows concerned: for duplicate groups the copies beyond the first, else the rows listed."""
        if self.lines:
            return len(self.lines)
        if self.check in ("exact_duplicates", "near_duplicates", "duplicate_instructions"):
            return sum(len(g) - 1 for g in self.groups)
        if self.check.startswith("leakage"):  # groups are (earlier-split row, held-out row): count held-out rows once
            return len({g[-1] for g in self.groups})
        return sum(len(g) for g in self.groups)


@dataclass
class Audit:
    task: str  # the task's name (for the report)
    kind: str  # its row kind (tunelab.tasks.base.ROW_KINDS): which checks apply
    items: list[Item]
    files: list[dict]
    stats: dict
    findings: list[Finding]
    label_probs: dict | None = None  # out-of-fold probabilities of the label-error probe (written to label_probs.json)

    def finding(self, check: str) -> Finding | None:
        return next((f for f in self.findings if f.check == check), None)


def run(inputs: Inputs, opts: Options = Options()) -> Audit:
    """Run every check not in ``opts.skip`` and collect the findings."""
    items = inputs.items()
    files = [
        {"split": s.name, "path": s.path, "format": s.fmt, "rows": len(s.items), "unreadable": len(s.skipped)}
        for s in inputs.splits
    ]
    audit = Audit(inputs.task.name, inputs.kind, items, files, {}, [])
    steps = [
        ("unreadable", _unreadable),
        ("duplicates", _duplicates),
        ("near_duplicates", _near),
        ("leakage", _leakage),
        ("encoding", _encoding),
        ("lengths", _lengths),
        ("language", _language),
        ("label_errors", _label_errors),
        ("tags", _tags),
        ("instructions", _instructions),
    ]
    _labels(inputs, audit)
    for name, step in steps:
        if name not in opts.skip:
            if opts.log:
                opts.log(f"audit: {name}")
            step(inputs, audit, opts)
    audit.findings = [f for f in audit.findings if f.groups or f.lines]
    return audit


def _labels(inputs: Inputs, audit: Audit) -> None:
    if inputs.kind != "text":
        return
    per = {s.name: dict(sorted(Counter(it.label for it in s.items).items())) for s in inputs.splits}
    audit.stats["labels"] = per
    audit.stats["imbalance"] = {name: round(checks.imbalance(c), 3) for name, c in per.items()}
    train = set(per.get("train", {}))
    for name, counts in per.items():
        unseen = sorted(set(counts) - train)
        if name != "train" and unseen:
            idx = [[i] for i, it in enumerate(audit.items) if it.split == name and it.label in unseen]
            audit.findings.append(
                Finding(
                    "unseen_labels",
                    f"{name} labels never seen in train: {', '.join(unseen)}",
                    "evaluation stops with an error on these rows",
                    idx,
                    severity="error",
                )
            )


def _unreadable(inputs: Inputs, audit: Audit, opts: Options) -> None:
    empty, other = [], []
    for s in inputs.splits:
        for line, reason in s.skipped:
            is_empty = "non-empty" in reason or "has no words" in reason
            (empty if is_empty else other).append((s.path, line, reason))
    name = "empty outputs or texts" if inputs.kind == "conversation" else "empty or whitespace-only texts"
    audit.findings.append(
        Finding("empty", name, "training with data.on_error: raise stops here; with skip they are dropped", lines=empty)
    )
    audit.findings.append(
        Finding(
            "unreadable",
            "rows the reader cannot use",
            "training with data.on_error: raise stops at the first; with skip they are dropped",
            lines=other,
            severity="error",
        )
    )


def _duplicates(inputs: Inputs, audit: Audit, opts: Options) -> None:
    items = audit.items
    keys = [f"{it.split}\x00{checks.normalise(it.text)}" for it in items]
    groups = checks.exact_groups(keys)
    lm = inputs.kind == "conversation"
    check = "duplicate_instructions" if lm else "exact_duplicates"
    title = (
        "duplicate instructions (same prompt)" if lm else "exact duplicates (same text after whitespace normalisation)"
    )
    audit.findings.append(
        Finding(
            check,
            title,
            "repeated rows weigh more in training; the copies beyond the first add nothing",
            groups,
            severity="info",
        )
    )
    conflict = [g for g in groups if len({_answer(items[i]) for i in g}) > 1]
    if inputs.kind != "tokens":
        what = "outputs" if lm else "labels"
        audit.findings.append(
            Finding(
                "conflicting_duplicates",
                f"duplicates with conflicting {what}",
                "the model is trained towards two answers for one input; at least one is wrong",
                conflict,
                severity="error",
            )
        )
    audit.stats["exact_duplicate_rows"] = sum(len(g) - 1 for g in groups)


def _answer(it: Item) -> str | None:
    return it.target if it.target is not None else it.label


def _near(inputs: Inputs, audit: Audit, opts: Options) -> None:
    items = audit.items
    pairs = checks.near_duplicate_pairs([it.text for it in items], opts.near_threshold)
    audit.stats["near_pairs"] = len(pairs)
    within = [p for p in pairs if items[p[0]].split == items[p[1]].split]
    groups = checks.clusters(len(items), within)
    sims = {}
    for i, j, s in within:
        sims.setdefault(i, []).append(s)
        sims.setdefault(j, []).append(s)
    detail = {k: max(max(sims.get(i, [0])) for i in g) for k, g in enumerate(groups)}
    audit.findings.append(
        Finding(
            "near_duplicates",
            f"near duplicates (character 5-gram Jaccard >= {opts.near_threshold})",
            "near copies over-weight one example and, across splits, inflate held-out scores",
            groups,
            detail={k: {"max_jaccard": v} for k, v in detail.items()},
            severity="info",
        )
    )
    if inputs.kind != "tokens":
        conflict = [g for g in groups if len({_answer(items[i]) for i in g}) > 1]
        audit.findings.append(
            Finding(
                "conflicting_near_duplicates",
                "near duplicates with conflicting labels or outputs",
                "nearly the same input with different answers: often a label error (or a negation)",
                conflict,
            )
        )
    across = [(i, j, s) for i, j, s in pairs if items[i].split != items[j].split]
    audit.stats["_near_across"] = across


def _leakage(inputs: Inputs, audit: Audit, opts: Options) -> None:
    items = audit.items
    order = {name: k for k, name in enumerate(("train", "dev", "test"))}
    seen: dict[str, int] = {}
    exact = []
    for i in sorted(range(len(items)), key=lambda i: order[items[i].split]):
        key = checks.normalise(items[i].text)
        j = seen.setdefault(key, i)
        if items[j].split != items[i].split:
            exact.append([j, i])
    audit.findings.append(
        Finding(
            "leakage_exact",
            "held-out rows whose text is also in an earlier split (train before dev before test)",
            "held-out scores are inflated: the model saw these inputs in training",
            exact,
            severity="error",
        )
    )
    across = audit.stats.pop("_near_across", [])
    near = [[i, j] if order[items[i].split] <= order[items[j].split] else [j, i] for i, j, _ in across]
    audit.findings.append(
        Finding(
            "leakage_near",
            f"held-out rows nearly equal to a row of another split (Jaccard >= {opts.near_threshold})",
            "held-out scores are optimistic on these rows",
            near,
            detail={k: {"jaccard": s} for k, (_, _, s) in enumerate(across)},
        )
    )


def _encoding(inputs: Inputs, audit: Audit, opts: Options) -> None:
    bad, why = [], {}
    for i, it in enumerate(audit.items):
        problems = checks.junk(it.text + ("\n" + it.target if it.target else ""))
        if problems:
            why[len(bad)] = {"problems": problems}
            bad.append([i])
    audit.findings.append(
        Finding(
            "encoding",
            "encoding junk (control, replacement or zero-width characters, mojibake)",
            "junk characters become [UNK] or odd sub-words and carry no meaning",
            bad,
            detail=why,
        )
    )


# what happens in training to a row longer than model.max_length, per row kind (tunelab.tasks.base.ROW_KINDS)
TRUNCATION_EFFECT = {
    "text": lambda cfg: "text past model.max_length is cut off before the model sees it",
    "tokens": lambda cfg: "sentences are cut into overlapping windows (nothing is lost, but context is)",
    "conversation": lambda cfg: f"examples longer than the context are {cfg.task.overlong}d (task.overlong)",
}


def _lengths(inputs: Inputs, audit: Audit, opts: Options) -> None:
    from tunelab.data import lengths

    cfg = inputs.cfg
    counted, prompts = lengths.count(inputs, audit.items)
    limit = cfg.model.max_length
    audit.stats["lengths"] = {
        s.name: checks.length_stats([counted[i] for i, it in enumerate(audit.items) if it.split == s.name], limit)
        for s in inputs.splits
    }
    audit.stats["length_histogram"] = checks.histogram(counted)
    over = [[i] for i, n in enumerate(counted) if n > limit]
    effect = TRUNCATION_EFFECT[inputs.kind](cfg)
    audit.findings.append(
        Finding(
            "too_long",
            f"rows longer than model.max_length ({limit} tokens of {cfg.model.name})",
            effect,
            over,
            detail={k: {"tokens": counted[g[0]]} for k, g in enumerate(over)},
            severity="info" if inputs.kind == "tokens" else "warning",
        )
    )
    if inputs.kind == "conversation":
        long_prompts = [[i] for i, n in enumerate(prompts) if n is not None and n >= limit]
        audit.findings.append(
            Finding(
                "prompt_too_long",
                f"prompts at least as long as the context ({limit} tokens)",
                "no reply token fits: the example teaches nothing",
                long_prompts,
                severity="error",
            )
        )


def _language(inputs: Inputs, audit: Audit, opts: Options) -> None:
    from tunelab.data import language

    mix, per_item = language.mix([it.text for it in audit.items])
    audit.stats["language"] = mix
    main = max(mix["languages"], key=mix["languages"].get) if mix["languages"] else None
    other = [[i] for i, lang in enumerate(per_item) if lang is not None and lang != main]
    if main is not None and len(other) >= max(2, 0.01 * mix["identified"]):
        audit.findings.append(
            Finding(
                "language_mix",
                f"rows not in the main language ({main})",
                "a monolingual model reads these poorly; check they belong",
                other,
                detail={k: {"language": per_item[g[0]]} for k, g in enumerate(other)},
                severity="info",
            )
        )


def _label_errors(inputs: Inputs, audit: Audit, opts: Options) -> None:
    if inputs.kind != "text":
        return
    idx = [i for i, it in enumerate(audit.items) if it.split == "train"]
    labels = [audit.items[i].label for i in idx]
    if len(set(labels)) < 2 or len(idx) < 20:
        return
    from tunelab.data import labelnoise

    texts = [audit.items[i].text for i in idx]
    ranked, probs, names = labelnoise.find(
        texts, labels, opts.label_model, opts.folds, opts.seed, opts.log, opts.label_probe, opts.label_cutoff
    )
    groups = [[idx[r]] for r in ranked]
    detail = {
        k: {
            "given": labels[r],
            "suggested": names[int(probs[r].argmax())],
            "p_given": round(float(probs[r][names.index(labels[r])]), 4),
        }
        for k, r in enumerate(ranked)
    }
    audit.stats["label_model"] = {
        "model": opts.label_model,
        "probe": labelnoise.describe_probe(opts.label_probe),
        "folds": opts.folds,
        "cutoff": opts.label_cutoff,
        "out_of_fold_accuracy": round(float((probs.argmax(1) == [names.index(x) for x in labels]).mean()), 4),
    }
    audit.label_probs = {
        "classes": names,
        "refs": [f"{audit.items[i].source}:{audit.items[i].line}" for i in idx],
        "given": labels,
        "probs": [[round(float(p), 6) for p in row] for row in probs],
    }
    audit.findings.append(
        Finding(
            "label_errors",
            "likely label errors (confident learning on out-of-fold probabilities)",
            "wrong labels teach the model wrong answers and cap its accuracy",
            groups,
            detail=detail,
        )
    )


def _tags(inputs: Inputs, audit: Audit, opts: Options) -> None:
    if inputs.kind != "tokens":
        return
    from tunelab.data import tagging

    tag_counts = {
        s.name: dict(sorted(Counter(t for it in s.items for t in it.row.tags).items())) for s in inputs.splits
    }
    spans = [(i, a, b, kind) for i, it in enumerate(audit.items) for a, b, kind in tagging.spans(it.row.tags)]
    audit.stats["tags"] = tag_counts
    audit.stats["entities"] = {
        s.name: dict(sorted(Counter(k for i, _, _, k in spans if audit.items[i].split == s.name).items()))
        for s in inputs.splits
    }
    groups, detail = [], {}
    for kind in sorted({k for *_, k in spans}):
        mine = [(i, b - a) for i, a, b, k in spans if k == kind]
        for pos in checks.outliers([n for _, n in mine]):
            detail[len(groups)] = {"type": kind, "tokens": mine[pos][1]}
            groups.append([mine[pos][0]])
    audit.findings.append(
        Finding(
            "entity_length_outliers",
            "entities much longer than others of their type (Q3 + 3 IQR)",
            "often a missing O or a B- where an entity should end",
            groups,
            detail=detail,
            severity="info",
        )
    )


def _instructions(inputs: Inputs, audit: Audit, opts: Options) -> None:
    if inputs.kind != "conversation":
        return
    empty = [
        [i]
        for i, it in enumerate(audit.items)
        if it.row.messages is not None
        and any(m["role"] == "assistant" and not m["content"].strip() for m in it.row.messages)
    ]
    audit.findings.append(
        Finding(
            "empty_outputs",
            "examples with an empty assistant reply",
            "the model learns to answer with nothing",
            empty,
            severity="error",
        )
    )
