"""`tunelab data audit | clean | augment | scrub | split`: argument parsing and the output-folder rules.

Every command only reads its inputs and writes into ``--out``, which must be new or empty (so no input can
be overwritten); extra output files named by options (e.g. ``--mapping``) must not exist yet.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tunelab.errors import TunelabError

INPUTS_HELP = (
    "CONFIG.yaml, or data files FILE [FILE [FILE]] (train, dev, test), then options as config overrides "
    "(data.text_column=sentence, task=token_classification, model.max_length=128, ...)"
)


def prepare_out(out: str, inputs: list[str]) -> Path:
    """Create ``out`` (or accept it empty); refuse a file, a non-empty folder, or a folder that is an input."""
    path = Path(out)
    resolved = path.resolve()
    for item in inputs:
        p = Path(item)
        if p.exists() and p.resolve() == resolved:
            raise TunelabError(f"{out}: --out is one of the inputs; choose a new or empty folder")
    if path.exists() and not path.is_dir():
        raise TunelabError(f"{out}: --out exists and is a file; choose a new or empty folder (nothing was written)")
    if path.is_dir() and any(path.iterdir()):
        raise TunelabError(f"{out}: --out is not empty; choose a new or empty folder (nothing was written)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_new_file(path: str | None, inputs: list[str]) -> None:
    """An extra output file (e.g. --mapping) must not exist (so it is neither an input nor anything else)."""
    if path is not None and Path(path).exists():
        raise TunelabError(f"{path}: already exists; refusing to overwrite it (nothing was written)")


def _audit_args(p: argparse.ArgumentParser) -> None:
    from tunelab.data.audit import CHECKS

    p.add_argument(
        "--near-threshold", type=float, default=0.8, help="character 5-gram Jaccard for near duplicates (default 0.8)"
    )
    p.add_argument("--skip", default="", help=f"comma-separated checks not to run: {', '.join(CHECKS)}")
    p.add_argument(
        "--label-model",
        default="minilm-l6",
        help="model(s) for the label-error probe: comma-separated models whose mean-pooled hidden states each feed a "
        "logistic regression, probabilities averaged (e.g. minilm-l6,smollm2-135m), or the one model fine-tuned per "
        "fold (default minilm-l6)",
    )
    p.add_argument(
        "--label-probe",
        default="embedding",
        help="out-of-fold probabilities from logistic regression on embeddings (embedding: fast), a short fine-tune of "
        "the first --label-model per fold (finetune: slower, more accurate), or both averaged (embedding,finetune)",
    )
    p.add_argument(
        "--label-cutoff",
        choices=("posterior", "calibrated", "estimate", "prune"),
        default="posterior",
        help="which rows are flagged as likely label errors: those more likely wrong than right by Bayes' rule on "
        "cleanlab's noise matrix (posterior, default: the surest); the same after temperature-scaling the "
        "probabilities to the given labels and undoing the noise matrix (calibrated: about as many as it estimates "
        "are wrong); cleanlab's estimated number of issues, lowest label quality first (estimate); or cleanlab's "
        "find_label_issues filter (prune)",
    )
    p.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds for out-of-fold probabilities (default 5)"
    )
    p.add_argument("--seed", type=int, default=0)


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="audit, clean, augment, scrub or split data (inputs are never modified)")
    dsub = p.add_subparsers(dest="data_command", required=True)
    a = dsub.add_parser("audit", help="report duplicates, leakage, label noise, junk, lengths ... with file:line")
    a.add_argument("inputs", nargs="+", help=INPUTS_HELP)
    a.add_argument("--out", required=True, help="new or empty folder for report.md, report.html, audit.json")
    _audit_args(a)
    c = dsub.add_parser(
        "clean", help="write cleaned copies of the data files and a log of every dropped or changed row"
    )
    c.add_argument("inputs", nargs="+", help=INPUTS_HELP)
    c.add_argument(
        "--out",
        required=True,
        help="new or empty folder for the cleaned files, changes.jsonl, changes.md and the audit",
    )
    c.add_argument(
        "--fix",
        default="exact,near,conflicts,unreadable,encoding",
        help="comma-separated fixes: exact (drop exact duplicates), near (keep one of near duplicates), conflicts "
        "(drop duplicates with conflicting labels), label-errors (drop likely mislabelled rows), relabel (give likely "
        "mislabelled rows the probe's label instead), leakage (drop "
        "held-out rows also in train), unreadable (drop rows the reader rejects), encoding (repair mojibake, remove control "
        "and zero-width characters), whitespace (collapse runs, strip ends); default: exact,near,conflicts,unreadable,encoding",
    )
    c.add_argument(
        "--from-audit",
        metavar="DIR",
        help="take the likely label errors from an earlier `data audit` of the same files (its folder or audit.json) "
        "instead of computing them again",
    )
    _audit_args(c)
    s = dsub.add_parser(
        "split", help="stratified train/dev/test split, grouped by a column or de-duplicated across splits"
    )
    s.add_argument("file", help="data file (a classification table, CoNLL/JSONL NER file or instruction data)")
    s.add_argument("options", nargs="*", help="reader options as config overrides (data.label_column=label, task=...)")
    s.add_argument("--out", required=True, help="new or empty folder for train/dev/test files")
    s.add_argument(
        "--fractions", default="0.8,0.1,0.1", help="train,dev,test fractions (default 0.8,0.1,0.1; test may be 0)"
    )
    s.add_argument("--group-by", help="column (or JSON key) whose value keeps rows together: no group in two splits")
    s.add_argument(
        "--dedupe", action="store_true", help="keep exact and near duplicates in one split (implies grouping by them)"
    )
    s.add_argument("--near-threshold", type=float, default=0.8)
    s.add_argument("--seed", type=int, default=0)
    _scrub_parser(dsub)
    _augment_parser(dsub)


def _scrub_parser(dsub) -> None:
    from tunelab.data.pii import TYPES

    p = dsub.add_parser(
        "scrub", help="find and replace personal data (e-mail, phone, cards, IBAN, names ...), or --evaluate a detector"
    )
    p.add_argument("inputs", nargs="*", help=INPUTS_HELP + "; none with --evaluate")
    p.add_argument(
        "--out", required=True, help="new or empty folder for the scrubbed files and findings.jsonl (or the evaluation)"
    )
    p.add_argument(
        "--types", default=",".join(TYPES), help=f"comma-separated types to find (default all): {', '.join(TYPES)}"
    )
    p.add_argument(
        "--replace",
        choices=("placeholder", "hash", "pseudonym"),
        default="placeholder",
        help="placeholder: <EMAIL>; hash: <EMAIL:9f86d081> (salted SHA-256); pseudonym: a consistent fake value per original",
    )
    p.add_argument(
        "--mapping", help="also write replacement -> original as JSON to this new file (keep it apart from the data)"
    )
    p.add_argument(
        "--salt", default="", help="salt for --replace hash and pseudonym choice (default: a random one per run)"
    )
    p.add_argument(
        "--ner", help="tunelab token-classification run folder (e.g. trained on WikiANN) for PERSON/ORG/LOCATION names"
    )
    p.add_argument(
        "--name-threshold",
        type=float,
        default=0.3,
        help="with --ner: mask a word as a name when the model gives it at least this name probability (1 - P(O)); "
        "0.5 is about plain argmax decoding, lower masks more (default 0.3)",
    )
    p.add_argument(
        "--evaluate",
        metavar="FILE",
        help="annotated JSON (presidio-research spans, or JSONL text+spans): per-type precision/recall",
    )


def _augment_parser(dsub) -> None:
    from tunelab.data.augment import OPS

    p = dsub.add_parser("augment", help="label-preserving augmentation of a small training file (original rows kept)")
    p.add_argument("inputs", nargs="+", help=INPUTS_HELP + "; only the train file is augmented")
    p.add_argument("--out", required=True, help="new or empty folder for the augmented train file and augment.jsonl")
    p.add_argument(
        "--ops",
        default="synonym,swap,delete,insert",
        help=f"comma-separated operations, used in turn: {', '.join(OPS)}",
    )
    p.add_argument("--copies", type=int, default=1, help="new rows per original row (default 1)")
    p.add_argument(
        "--alpha", type=float, default=0.1, help="fraction of words each EDA operation changes (default 0.1)"
    )
    p.add_argument(
        "--synonyms",
        choices=("wordnet", "embedding"),
        default="wordnet",
        help="synonym source: WordNet database files (Debian wordnet-base) or minilm-l6 embedding neighbours",
    )
    p.add_argument(
        "--wordnet-dir",
        default=None,
        help="folder with WordNet data.* files (default: $WORDNET_DIR or /usr/share/wordnet)",
    )
    p.add_argument("--paraphrase-model", default="smollm2-135m", help="causal LM for the paraphrase operation")
    p.add_argument(
        "--filter",
        default="embedding",
        help="paraphrases kept only if a classifier agrees with the label: 'embedding' (logistic regression on minilm-l6 "
        "embeddings of the original rows), a tunelab classification run folder, or 'none'",
    )
    p.add_argument("--seed", type=int, default=0)


def run(args, log) -> int:
    return {"audit": audit, "clean": clean, "split": split, "scrub": _scrub, "augment": _augment}[args.data_command](
        args, log
    )


def _options(args, log):
    from tunelab.data import labelnoise
    from tunelab.data.audit import CHECKS, Options

    skip = frozenset(s.strip() for s in args.skip.split(",") if s.strip())
    unknown = sorted(skip - set(CHECKS))
    if unknown:
        raise TunelabError(f"--skip: unknown check {unknown[0]!r}; valid: {', '.join(CHECKS)}")
    if not 0 < args.near_threshold <= 1:
        raise TunelabError(f"--near-threshold: expected a number in (0, 1], found {args.near_threshold}")
    models = labelnoise.model_list(args.label_model)
    if not models:
        raise TunelabError(
            f"--label-model: expected one or more comma-separated model names, found {args.label_model!r}"
        )
    probes = labelnoise.probe_list(args.label_probe)
    wrong = [p for p in probes if p not in labelnoise.PROBES]
    if not probes or wrong or len(set(probes)) < len(probes):
        raise TunelabError(
            f"--label-probe: expected one or both of {', '.join(labelnoise.PROBES)} (comma-separated, each once), "
            f"found {args.label_probe!r}"
        )
    if probes == ["finetune"] and len(models) > 1:
        raise TunelabError(
            f"--label-model: --label-probe finetune fine-tunes one model, found {len(models)} ({args.label_model}); "
            "several models are for --label-probe embedding (with embedding,finetune the first one is fine-tuned)"
        )
    if args.folds < 2:
        raise TunelabError(f"--folds: expected 2 or more cross-validation folds, found {args.folds}")
    return Options(
        near_threshold=args.near_threshold,
        skip=skip,
        label_model=args.label_model,
        label_probe=args.label_probe,
        label_cutoff=args.label_cutoff,
        folds=args.folds,
        seed=args.seed,
        log=log,
    )


def audit(args, log) -> int:
    from tunelab.data import audit as audit_mod
    from tunelab.data import audit_report
    from tunelab.data import corpus as inputs

    opts = _options(args, log)
    data = inputs.load(args.inputs)
    out = prepare_out(args.out, _paths(data))
    result = audit_mod.run(data, opts)
    written = audit_report.write(result, out)
    for name, n in written["summary"].items():
        log(f"  {name}: {n}")
    log(f"done: {out / 'report.md'}")
    return 0


def _paths(data) -> list[str]:
    return [s.path for s in data.splits]


def clean(args, log) -> int:
    from tunelab.data import clean as clean_mod
    from tunelab.data import corpus as inputs

    opts = _options(args, log)
    fixes = clean_mod.parse_fixes(args.fix)
    if not clean_mod.LABEL_FIXES & fixes or args.from_audit:
        opts.skip = opts.skip | {"label_errors"}
    data = inputs.load(args.inputs)
    inputs.writable(data)
    out = prepare_out(args.out, _paths(data))
    summary = clean_mod.run(data, fixes, opts, out, log, from_audit=args.from_audit)
    log(json.dumps(summary))
    log(f"done: {out}")
    return 0


def split(args, log) -> int:
    from tunelab.data import corpus as inputs
    from tunelab.data import partition

    fractions = partition.parse_fractions(args.fractions)
    data = inputs.load([args.file, *args.options], max_files=1)
    inputs.writable(data)
    out = prepare_out(args.out, _paths(data))
    summary = partition.run(
        data,
        fractions,
        out,
        group_by=args.group_by,
        dedupe=args.dedupe,
        near_threshold=args.near_threshold,
        seed=args.seed,
    )
    log(json.dumps(summary))
    log(f"done: {out}")
    return 0


def _scrub(args, log) -> int:
    from tunelab.data import corpus as inputs
    from tunelab.data import scrub

    types = scrub.parse_types(args.types)
    if args.evaluate:
        if args.inputs:
            raise TunelabError("--evaluate reads its own annotated file; give no other inputs")
        out = prepare_out(args.out, [args.evaluate])
        result = scrub.evaluate(
            args.evaluate, types, out, ner_run=args.ner, log=log, name_threshold=args.name_threshold
        )
        for name, m in result["per_type"].items():
            log(
                f"  {name:<16} precision {m['precision']:.3f} recall {m['recall']:.3f} (gold {m['gold']}, found {m['predicted']})"
            )
        log(f"done: {out / 'evaluation.md'}")
        return 0
    if not args.inputs:
        raise TunelabError("give data files or a config to scrub, or --evaluate FILE")
    if args.mapping and args.replace == "placeholder":
        raise TunelabError(
            "--mapping: a placeholder is the same for every value and cannot be reversed; "
            "use --replace hash or --replace pseudonym with --mapping"
        )
    data = inputs.load(args.inputs)
    inputs.writable(data)
    check_new_file(args.mapping, _paths(data))
    out = prepare_out(args.out, _paths(data))
    summary = scrub.run(
        data,
        out,
        types=types,
        replace=args.replace,
        mapping=args.mapping,
        salt=args.salt,
        ner_run=args.ner,
        log=log,
        name_threshold=args.name_threshold,
    )
    log(json.dumps(summary))
    log(f"done: {out}")
    return 0


def _augment(args, log) -> int:
    from tunelab.data import augment
    from tunelab.data import corpus as inputs

    if args.copies < 1:
        raise TunelabError(f"--copies: expected at least 1, found {args.copies}")
    if not 0 < args.alpha <= 0.5:
        raise TunelabError(f"--alpha: expected a fraction in (0, 0.5], found {args.alpha}")
    ops = augment.parse_ops(args.ops)
    data = inputs.load(args.inputs)
    inputs.writable(data)
    out = prepare_out(args.out, _paths(data))
    summary = augment.run(
        data,
        out,
        ops=ops,
        copies=args.copies,
        alpha=args.alpha,
        synonyms=args.synonyms,
        wordnet_dir=args.wordnet_dir,
        paraphrase_model=args.paraphrase_model,
        filter_with=args.filter,
        seed=args.seed,
        log=log,
    )
    log(json.dumps(summary))
    log(f"done: {out}")
    return 0
