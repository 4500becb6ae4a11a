"""Interaction logs (user, item, time) -> text datasets for recommendation, split leave-last-out.

A user's interest is the text of what they interacted with most recently (titles, years, genres...). Each user's
items are ordered by time: the last is the test target, the one before it the dev target, the rest train. From
that, ``prepare`` writes files that tunelab's own tasks train on and ``tunelab recommend eval`` ranks:

- ``pairs-{train,dev}.tsv``: (history, item, label) rows: each target item with label 1 and ``negatives`` items the
  user never touched with label 0 (implicit feedback), for a text-pair relevance classifier;
- ``retrieval-{train,dev}.tsv``: (history, item) positive pairs, for a contrastive bi-encoder (task: retrieval);
- ``test.jsonl``: per user, the history before the test item and ``candidates`` items to rank: the held-out item
  and items the user never touched (the sampled-candidates protocol of NCF, He et al. 2017);
- ``popularity.json``: training interactions per item (the popularity baseline; test and dev items excluded).

Reads RecBole atomic files (``.inter``/``.item``: TSV with ``name:type`` headers) and CSV/TSV files with a header.
Every problem names ``file:line``.
"""

from __future__ import annotations

import csv
import difflib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.errors import DataError


@dataclass(frozen=True)
class Options:
    """How the log is turned into datasets (see ``tunelab recommend prepare --help``)."""

    user_column: str = "user_id"
    item_column: str = "item_id"
    time_column: str = "timestamp"
    item_text: tuple[str, ...] = ("movie_title", "release_year", "class")
    history: int = 10
    targets_per_user: int = 5
    negatives: int = 1
    candidates: int = 99
    users: int | None = None
    test_users: int | None = None
    seed: int = 0


@dataclass
class Prepared:
    """The split log: each user's items in time order, and the item texts."""

    sequences: dict[str, list[str]]
    texts: dict[str, str]
    skipped_users: int = 0
    counts: dict = field(default_factory=dict)


def _delimiter(path: Path) -> str:
    return "," if path.suffix.lower() == ".csv" else "\t"


def _header_index(header: list[str], name: str, path: str, option: str) -> int:
    """Column ``name`` in a header; RecBole's ``name:type`` headers match on the name alone."""
    bare = [h.split(":", 1)[0] for h in header]
    for names in (header, bare):
        if name in names:
            return names.index(name)
    close = difflib.get_close_matches(name, bare, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DataError(f"{path}:1: {option}: no column '{name}' in the header; available: {', '.join(bare)}{hint}")


def _rows(path: str):
    """(line, cells) of a delimited file after its header, and the header."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = p.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: expected UTF-8 text, found byte 0x{exc.object[exc.start]:02x}") from None
    reader = csv.reader(text.splitlines(), delimiter=_delimiter(p))
    header = next(reader, None)
    if not header:
        raise DataError(f"{path}: empty file; expected a header line")
    return header, ((n, cells) for n, cells in enumerate(reader, start=2) if cells)


def read_items(path: str, opts: Options) -> dict[str, str]:
    """item id -> its text (the ``item_text`` columns joined by " | ", empty cells left out)."""
    header, rows = _rows(path)
    key = _header_index(header, opts.item_column, path, "--item-column")
    cols = [_header_index(header, c, path, "--item-text") for c in opts.item_text]
    texts: dict[str, str] = {}
    for n, cells in rows:
        if len(cells) != len(header):
            raise DataError(f"{path}:{n}: expected {len(header)} fields (as in the header), found {len(cells)}")
        text = " | ".join(cells[c].strip() for c in cols if cells[c].strip())
        if not text:
            raise DataError(f"{path}:{n}: item {cells[key]!r} has no text in columns {', '.join(opts.item_text)}")
        texts[cells[key].strip()] = text
    if not texts:
        raise DataError(f"{path}: no items")
    return texts


def read_log(path: str, texts: dict[str, str], opts: Options) -> dict[str, list[str]]:
    """user -> items in time order (ties keep file order); items must be in the item file."""
    header, rows = _rows(path)
    u = _header_index(header, opts.user_column, path, "--user-column")
    i = _header_index(header, opts.item_column, path, "--item-column")
    t = _header_index(header, opts.time_column, path, "--time-column")
    events: dict[str, list[tuple[float, int, str]]] = {}
    for n, cells in rows:
        if len(cells) != len(header):
            raise DataError(f"{path}:{n}: expected {len(header)} fields (as in the header), found {len(cells)}")
        item = cells[i].strip()
        if item not in texts:
            raise DataError(f"{path}:{n}: item {item!r} is not in the item file")
        try:
            when = float(cells[t])
        except ValueError:
            raise DataError(f"{path}:{n}: {opts.time_column}: expected a number, found {cells[t]!r}") from None
        events.setdefault(cells[u].strip(), []).append((when, n, item))
    if not events:
        raise DataError(f"{path}: no interactions")
    return {user: [item for *_, item in sorted(evs)] for user, evs in events.items()}


def history_text(items: list[str], texts: dict[str, str], k: int) -> str:
    """The ``k`` most recent items, most recent first: what the user is into now."""
    return " ; ".join(texts[i] for i in reversed(items[-k:]))


def _negatives(rng: random.Random, catalogue: list[str], seen: set[str], n: int) -> list[str]:
    out: list[str] = []
    if len(catalogue) - len(seen) < n:
        raise DataError(f"cannot sample {n} unseen items for a user who has seen {len(seen)} of {len(catalogue)}")
    while len(out) < n:
        item = rng.choice(catalogue)
        if item not in seen and item not in out:
            out.append(item)
    return out


def build(log: str, items: str, opts: Options) -> tuple[dict[str, list], dict]:
    """The datasets (file name -> rows) and a summary; pure apart from reading the two files."""
    texts = read_items(items, opts)
    seqs = read_log(log, texts, opts)
    rng = random.Random(opts.seed)
    users = sorted(seqs, key=lambda u: (len(u), u))  # numeric ids in number order
    users = [u for u in users if len(seqs[u]) >= 3]
    skipped = len(seqs) - len(users)
    if opts.users is not None:
        users = sorted(rng.sample(users, min(opts.users, len(users))), key=lambda u: (len(u), u))
    catalogue = sorted(texts)
    out: dict[str, list] = {k: [] for k in ("pairs-train", "pairs-dev", "retrieval-train", "retrieval-dev", "test")}
    popularity: dict[str, int] = {}
    tested = set(users if opts.test_users is None else rng.sample(users, min(opts.test_users, len(users))))
    for user in users:
        seq, seen = seqs[user], set(seqs[user])
        train = seq[:-2]
        for item in train:
            popularity[item] = popularity.get(item, 0) + 1
        targets = [(p, "train") for p in range(max(1, len(train) - opts.targets_per_user), len(train))]
        for pos, split in [*targets, (len(seq) - 2, "dev")]:
            hist = history_text(seq[:pos], texts, opts.history)
            out[f"retrieval-{split}"].append((hist, texts[seq[pos]]))
            out[f"pairs-{split}"].append((hist, texts[seq[pos]], "1"))
            for neg in _negatives(rng, catalogue, seen, opts.negatives):
                out[f"pairs-{split}"].append((hist, texts[neg], "0"))
        if user not in tested:
            continue
        cands = [seq[-1], *_negatives(rng, catalogue, seen, opts.candidates)]
        rng.shuffle(cands)
        out["test"].append(
            {
                "user": user,
                "history": history_text(seq[:-1], texts, opts.history),
                "positive": seq[-1],
                "candidates": [{"item": c, "text": texts[c]} for c in cands],
            }
        )
    for split in ("train", "dev"):  # the classifier reads the rows in order: mix positives and negatives
        rng.shuffle(out[f"pairs-{split}"])
    summary = {
        "users": len(users),
        "users_skipped_fewer_than_3_items": skipped,
        "items": len(texts),
        **{f"{k}_rows": len(v) for k, v in out.items()},
        "candidates_per_user": opts.candidates + 1,
    }
    out["popularity"] = [popularity]
    return out, summary


def write(out_dir: Path, datasets: dict[str, list]) -> list[Path]:
    """Write the datasets into ``out_dir`` (already checked new or empty)."""
    written = []
    heads = {"pairs": ("history", "item", "label"), "retrieval": ("history", "item")}
    for name, rows in datasets.items():
        if name == "test":
            path = out_dir / "test.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        elif name == "popularity":
            path = out_dir / "popularity.json"
            path.write_text(json.dumps(rows[0], indent=0, sort_keys=True), encoding="utf-8")
        else:
            path = out_dir / f"{name}.tsv"
            with path.open("w", encoding="utf-8", newline="") as f:
                w = csv.writer(f, delimiter="\t", lineterminator="\n")
                w.writerow(heads[name.split("-")[0]])
                w.writerows(rows)
        written.append(path)
    return written
