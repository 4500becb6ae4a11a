"""Pure functions on tag sequences: scheme conversion to IOB2, validation, repair, spans.

Inside tunelab every sequence is IOB2 (BIO): ``B-X`` opens an entity of type X,
``I-X`` continues it, ``O`` is outside. IOB1 and BIOES (also spelled IOBES) files
are converted on reading. Nothing here knows about files; callers add file:line.
"""

from __future__ import annotations

SCHEMES = ("iob2", "bio", "iob1", "bioes", "iobes")
_PREFIXES = {"iob2": "BI", "bio": "BI", "iob1": "BI", "bioes": "BIES", "iobes": "BIES"}


def split_tag(tag: str) -> tuple[str, str | None]:
    """('B', 'PER') for 'B-PER', ('O', None) for 'O'; raises ValueError for anything else."""
    if tag == "O":
        return "O", None
    prefix, sep, kind = tag.partition("-")
    if not sep or not kind or len(prefix) != 1:
        raise ValueError(f"tag '{tag}' is not 'O' or PREFIX-TYPE (e.g. B-PER)")
    return prefix, kind


def check_prefixes(tags: list[str], scheme: str) -> None:
    """Raise ValueError naming the first tag whose prefix the scheme does not allow (e.g. S-PER under IOB2)."""
    allowed = _PREFIXES[scheme]
    for i, tag in enumerate(tags):
        prefix, _ = split_tag(tag)
        if prefix != "O" and prefix not in allowed:
            raise ValueError(
                f"tag '{tag}' has prefix '{prefix}', which scheme {scheme} does not use (allowed: {', '.join(allowed)}, O)"
            )


def to_iob2(tags: list[str], scheme: str) -> list[str]:
    """Convert a tag sequence from ``scheme`` to IOB2 (the result may still be invalid; see ``find_invalid``).

    IOB1: an I-X that does not continue an X entity opens one (becomes B-X).
    BIOES: S-X -> B-X, E-X -> I-X.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme '{scheme}'; known: {', '.join(SCHEMES)}")
    check_prefixes(tags, scheme)
    if scheme in ("iob2", "bio"):
        return list(tags)
    out: list[str] = []
    prev_kind = None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if scheme == "iob1":
            new = f"B-{kind}" if prefix == "I" and kind != prev_kind else tag
        else:
            new = {"S": f"B-{kind}", "E": f"I-{kind}"}.get(prefix, tag)
        out.append(new)
        prev_kind = kind
    return out


def find_invalid(tags: list[str]) -> list[tuple[int, str]]:
    """(index, reason) for each I-X in an IOB2 sequence that does not continue a B-X/I-X."""
    bad = []
    prev = "O"
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix == "I" and (prev == "O" or split_tag(prev)[1] != kind):
            reason = "starts the sentence" if i == 0 else f"follows '{prev}'"
            bad.append((i, f"'{tag}' {reason}; in IOB2 an I-{kind} must continue a B-{kind} or I-{kind}"))
        prev = tag
    return bad


def repair(tags: list[str]) -> list[str]:
    """IOB2 with every orphan I-X turned into B-X (what conlleval does when it reads such a sequence)."""
    out = list(tags)
    for i, _ in find_invalid(tags):
        out[i] = "B-" + split_tag(tags[i])[1]
    return out


def spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """Entities of a valid IOB2 sequence as (first token, last token + 1, type)."""
    out: list[tuple[int, int, str]] = []
    start, kind = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, k = split_tag(tag)
        if start is not None and (prefix != "I" or k != kind):
            out.append((start, i, kind))
            start = None
        if prefix in ("B", "I") and start is None:
            start, kind = i, k
    return out


def from_spans(n: int, entities: list[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags for ``n`` tokens with the given (start, end, type) token spans; overlaps raise ValueError."""
    tags = ["O"] * n
    for start, end, kind in sorted(entities):
        if any(t != "O" for t in tags[start:end]):
            raise ValueError(f"entity {kind} at tokens {start}-{end} overlaps another entity")
        tags[start:end] = [f"B-{kind}"] + [f"I-{kind}"] * (end - start - 1)
    return tags


def entity_types(tags: list[str]) -> list[str]:
    """Sorted entity types used in a tag list."""
    return sorted({split_tag(t)[1] for t in tags if t != "O"})


def label_names(types: list[str]) -> list[str]:
    """IOB2 label list for entity types: O first, then B-X, I-X for each type (stable ids across runs with the same types)."""
    return ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
