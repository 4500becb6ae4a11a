"""`tunelab data split`: stratified train/dev/test files, grouped by a column or de-duplicated across splits.

``assign`` is pure: group ids, labels, fractions and a seed in; a split index per row out. Rows of one group
always land in the same split; within that constraint each split gets close to its fraction of every label.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from tunelab.data import checks, rewrite
from tunelab.data.corpus import Inputs
from tunelab.errors import DataError, TunelabError

NAMES = ("train", "dev", "test")


def parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise TunelabError(f"--fractions: expected numbers like 0.8,0.1,0.1, found {text!r}") from None
    if len(parts) == 2:
        parts.append(0.0)
    if len(parts) != 3 or any(p < 0 for p in parts) or parts[0] <= 0 or parts[1] <= 0 or abs(sum(parts) - 1) > 1e-6:
        raise TunelabError(
            f"--fractions: expected train,dev[,test] fractions, train and dev above 0, summing to 1; found {text!r}"
        )
    return parts[0], parts[1], parts[2]


def assign(groups: list[int], labels: list, fractions: tuple[float, ...], seed: int) -> list[int]:
    """Split index (0 train, 1 dev, 2 test) per row.

    Without real groups (every row its own) each label's rows are shuffled and cut at the fractions, so the
    counts are exact up to rounding. With groups, groups are placed largest first (ties in seeded random order)
    into the split whose label counts are furthest below their targets.
    """
    rng = random.Random(seed)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    out = [0] * len(groups)
    if all(len(m) == 1 for m in members.values()):
        by_label: dict = defaultdict(list)
        for i, lab in enumerate(labels):
            by_label[lab].append(i)
        for lab in sorted(by_label, key=str):
            idx = by_label[lab]
            rng.shuffle(idx)
            cut1 = round(len(idx) * fractions[0])
            cut2 = cut1 + round(len(idx) * fractions[1])
            for k, i in enumerate(idx):
                out[i] = 0 if k < cut1 else 1 if k < cut2 else 2
        return out
    total = Counter(labels)
    have = [Counter() for _ in fractions]
    order = list(members)
    rng.shuffle(order)
    order.sort(key=lambda g: -len(members[g]))
    for g in order:
        need = Counter(labels[i] for i in members[g])
        deficit = [
            sum(fractions[s] * total[lab] - have[s][lab] for lab in need) if fractions[s] > 0 else float("-inf")
            for s in range(len(fractions))
        ]
        s = max(range(len(fractions)), key=lambda k: (deficit[k], -k))
        have[s].update(need)
        for i in members[g]:
            out[i] = s
    return out


def group_ids(keys: list) -> list[int]:
    """Equal keys -> equal ids (first-seen order)."""
    seen: dict = {}
    return [seen.setdefault(k, len(seen)) for k in keys]


def merge_groups(base: list[int], pairs: list[tuple[int, int]]) -> list[int]:
    """Group ids after also joining the rows in ``pairs`` (and everything already grouped with them)."""
    n = len(base)
    first: dict[int, int] = {}
    links = [(first.setdefault(g, i), i) for i, g in enumerate(base)]  # rows of one base group chained to its first row
    comps = checks.clusters(n, links + [p[:2] for p in pairs])
    out = list(range(n))
    for comp in comps:
        for i in comp:
            out[i] = comp[0]
    return group_ids(out)


def column_values(data: Inputs, rf: rewrite.RawFile, column: str) -> dict[int, str]:
    """Start line -> value of ``column`` for every data record (csv/tsv column name or position, JSON key)."""
    out = {}
    if rf.fmt in ("csv", "tsv"):
        first = next(r for r in rf.records if r.data)
        pos = rewrite.column_index(first.fields, column, column in first.fields)
        for r in rf.records:
            if r.data and pos < len(r.fields):
                out[r.line] = r.fields[pos]
    elif rf.fmt in ("json", "jsonl"):
        for r in rf.records:
            if r.data and isinstance(r.fields, dict):
                if column not in r.fields:
                    raise DataError(
                        f"{rf.path}:{r.line}: --group-by: expected key {column!r}, found keys {', '.join(map(repr, r.fields))}"
                    )
                out[r.line] = json.dumps(r.fields[column], sort_keys=True)
    else:
        raise DataError(f"{rf.path}: --group-by needs a csv, tsv, json or jsonl file, found {rf.fmt}")
    return out


def run(
    data: Inputs, fractions, out: Path, *, group_by: str | None, dedupe: bool, near_threshold: float, seed: int
) -> dict:
    split = data.splits[0]
    items = split.items
    rf = rewrite.read_raw(split.path, split.fmt, split.lines_as)
    if group_by:
        values = column_values(data, rf, group_by)
        groups = group_ids([values[it.line] for it in items])
    else:
        groups = list(range(len(items)))
    if dedupe:
        exact = [(g[0], j) for g in checks.exact_groups([checks.normalise(it.text) for it in items]) for j in g[1:]]
        near = checks.near_duplicate_pairs([it.text for it in items], near_threshold)
        groups = merge_groups(groups, exact + [p[:2] for p in near])
    where = assign(groups, [it.label for it in items], fractions, seed)
    by_line = rf.by_line()
    item_lines = {it.line for it in items}
    skipped_starts = {r.line for r in rf.records if r.data} - item_lines
    header = [
        r
        for r in rf.records
        if r.data
        and r.line in skipped_starts
        and r.line < min(item_lines)
        and not any(line == r.line for line, _ in split.skipped)
    ]
    ext = "".join(s for s in Path(split.path).suffixes if s not in (".gz", ".bz2", ".xz")) or Path(split.path).suffix
    summary = {
        "input": split.path,
        "groups": len(set(groups)),
        "unreadable_rows_left_out": len(split.skipped),
        "splits": {},
    }
    for s, name in enumerate(NAMES):
        rows = [by_line[it.line] for it, w in zip(items, where) if w == s]
        if not rows and fractions[s] == 0:
            continue
        path = out / f"{name}{ext}"
        path.write_text(rewrite.render(rf, header + rows), encoding="utf-8")
        labels = Counter(it.label for it, w in zip(items, where) if w == s and it.label is not None)
        summary["splits"][name] = {"file": str(path), "rows": len(rows), "labels": dict(sorted(labels.items()))}
    (out / "split.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return summary
