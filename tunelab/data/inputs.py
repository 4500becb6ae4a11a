"""What `predict` and `eval` read: the run's own data settings, adapted on their command line.

A run remembers how its training files looked (format, columns, delimiter, encoding). The file a user
predicts on or evaluates often looks different, so both commands take the same ``data.*`` overrides as
`train` (``data.text_column=0``) plus short flags for the common ones (``--text-column 0``). Every data
hint in an error message (``set data.format=csv``) is therefore something the user can do right there.
"""

from __future__ import annotations

from tunelab.errors import ConfigError

FLAGS = {  # flag dest -> (data key, help)
    "format": (
        "format",
        "input format: csv, tsv, json, jsonl, text (one text per line), conll; default: from the extension",
    ),
    "text_column": ("text_column", "column holding the text (name, or 0-based position for headerless files)"),
    "text_pair_column": ("text_pair_column", "second text column for sentence-pair runs"),
    "delimiter": ("delimiter", "field separator of a csv/tsv file, one character (or 'tab')"),
    "encoding": ("encoding", "text encoding of the file, e.g. latin-1"),
}
LABEL_FLAG = {"label_column": ("label_column", "column holding the gold label")}


def add_flags(p, labels: bool) -> None:
    """The overrides and flags of `predict` (labels=False) and `eval` (labels=True)."""
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="data.KEY=VALUE",
        help="data settings for this input, as in training (e.g. data.has_header=false); see `tunelab config`",
    )
    for dest, (_, text) in {**FLAGS, **(LABEL_FLAG if labels else {})}.items():
        p.add_argument("--" + dest.replace("_", "-"), dest=dest, default=None, help=text)


def adapted(cfg, args):
    """The run's config with this command's data overrides and flags applied and validated (before any model loads)."""
    from tunelab import config

    items = list(getattr(args, "overrides", None) or [])
    for item in items:
        key = item.partition("=")[0].strip()
        if not key.startswith(("data.", "task.")) or key in ("task", "task.name"):
            raise ConfigError(
                f"'{item}': `tunelab {args.command}` takes only data.* and task.* option overrides (the run's "
                "task, model and training settings are fixed); e.g. data.text_column=0"
            )
    flags = {**FLAGS, **LABEL_FLAG}
    given = {key: getattr(args, dest) for dest, (key, _) in flags.items() if getattr(args, dest, None) is not None}
    out = config.with_overrides(cfg, items, source="command line")
    if not given:
        return out
    raw = out.model_dump(mode="json")
    raw["data"].update({k: _column(v) if k.endswith("_column") else v for k, v in given.items()})
    return config.validate(raw, source="command line")


def _column(value: str) -> str | int:
    """--text-column 0 is a position; --text-column sentence a name."""
    return int(value) if value.isascii() and value.isdigit() else value
