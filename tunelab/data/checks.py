"""Pure data-quality checks: duplicates (exact and MinHash near), clusters, encoding junk, length and outlier statistics.

Everything here takes lists of strings or numbers and returns indices, groups or numbers; nothing reads files.
Tests check these against hand-computed values.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls except TAB, LF, CR
_ZERO_WIDTH = re.compile("[\u200b-\u200d\u2060\ufeff]")
_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The key exact-duplicate checks compare: Unicode NFC, whitespace runs collapsed to one space, ends stripped."""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def exact_groups(keys: list[str]) -> list[list[int]]:
    """Groups (in first-occurrence order) of indices whose keys are equal, only groups of two or more."""
    where: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        where[k].append(i)
    return [g for g in where.values() if len(g) > 1]


def shingles(text: str, n: int = 5) -> set[str]:
    """Character n-grams of the lower-cased normalised text (the whole text if it is shorter than n)."""
    t = normalise(text).lower()
    return {t[i : i + n] for i in range(len(t) - n + 1)} if len(t) >= n else {t}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicate_pairs(
    texts: list[str], threshold: float = 0.8, num_perm: int = 128, seed: int = 1, n: int = 5
) -> list[tuple[int, int, float]]:
    """Pairs (i < j, Jaccard) of texts whose character-``n``-gram Jaccard similarity is at least ``threshold``.

    Candidates come from MinHash LSH (datasketch); each candidate is then verified with the exact Jaccard
    of the shingle sets, so no pair below the threshold is reported. Pairs of texts equal after
    ``normalise`` are left out (they are exact duplicates).
    """
    from datasketch import MinHash, MinHashLSH

    sets = [shingles(t, n) for t in texts]
    keys = [normalise(t) for t in texts]
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = MinHash.bulk([[s.encode("utf-8") for s in sh] for sh in sets], num_perm=num_perm, seed=seed)
    first: dict[str, int] = {}
    for i, (k, m) in enumerate(zip(keys, hashes)):
        if k in first:  # an exact copy adds nothing the first one does not find
            continue
        first[k] = i
        lsh.insert(i, m)
    pairs = set()
    for k, i in first.items():
        for j in lsh.query(hashes[i]):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    out = [(i, j, round(jaccard(sets[i], sets[j]), 4)) for i, j in sorted(pairs)]
    return [p for p in out if p[2] >= threshold and keys[p[0]] != keys[p[1]]]


def clusters(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (sorted, only those with two or more members) of the graph on 0..n-1 with edges ``pairs``."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, *_ in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def junk(text: str) -> list[str]:
    """Encoding problems in one text: control characters, U+FFFD replacement characters, zero-width characters, mojibake."""
    found = []
    if _CONTROL.search(text):
        found.append("control characters")
    if "\ufffd" in text:
        found.append("replacement characters (U+FFFD: bytes lost in a bad decode)")
    if _ZERO_WIDTH.search(text):
        found.append("zero-width characters")
    if is_mojibake(text):
        found.append("mojibake (UTF-8 read as Latin-1/CP1252, e.g. 'Ã©' for 'é')")
    return found


def is_mojibake(text: str) -> bool:
    """True if ftfy would repair the text's encoding (not only its punctuation or width)."""
    import ftfy

    return ftfy.badness.is_bad(text) and ftfy.fix_encoding(text) != text  # the cheap regex test first


def fix_encoding(text: str) -> str:
    """Mojibake repaired (ftfy), control characters turned into spaces, zero-width characters removed."""
    import ftfy

    t = ftfy.fix_encoding(text) if is_mojibake(text) else text
    return _ZERO_WIDTH.sub("", _CONTROL.sub(" ", t))


def fix_text(text: str) -> str:
    """``fix_encoding`` plus ``normalise`` (NFC, whitespace runs collapsed, ends stripped)."""
    return normalise(fix_encoding(text))


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation (numpy's default)."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def length_stats(lengths: list[int], limit: int | None = None) -> dict:
    """min, mean, median, p90, p99, max and (with ``limit``) how many exceed it."""
    s = sorted(lengths)
    out = {
        "count": len(s),
        "min": s[0] if s else 0,
        "mean": round(sum(s) / len(s), 2) if s else 0.0,
        "p50": percentile(s, 50),
        "p90": percentile(s, 90),
        "p99": percentile(s, 99),
        "max": s[-1] if s else 0,
    }
    if limit is not None:
        out["over_limit"] = sum(x > limit for x in s)
        out["limit"] = limit
    return out


def outliers(values: list[float], k: float = 3.0) -> list[int]:
    """Indices of values above the upper Tukey fence Q3 + k * IQR (strictly above Q3, so constant data has none)."""
    s = sorted(values)
    q1, q3 = percentile(s, 25), percentile(s, 75)
    fence = q3 + k * (q3 - q1)
    return [i for i, v in enumerate(values) if v > fence and v > q3]


def imbalance(counts: dict[str, int]) -> float:
    """Largest class count divided by the smallest (1.0 = balanced)."""
    return max(counts.values()) / max(min(counts.values()), 1) if counts else 1.0


def histogram(values: list[int], bins: int = 20) -> list[tuple[int, int, int]]:
    """(low, high, count) integer bins of equal width covering [min, max] (both ends inclusive), at most ``bins`` of them."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    width = -(-(hi - lo + 1) // bins)  # ceil
    counts = [0] * (-(-(hi - lo + 1) // width))
    for v in values:
        counts[(v - lo) // width] += 1
    return [(lo + b * width, lo + (b + 1) * width - 1, c) for b, c in enumerate(counts)]
