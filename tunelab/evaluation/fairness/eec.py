"""Equity Evaluation Corpus (Kiritchenko & Mohammad, 2018): sentiment score gaps by gender and race.

The corpus has 8,640 sentences from templates ("<person> feels <emotion word>.") filled with
names or noun phrases of a gender (and, for names, a race). A pair matches the sentences that differ only
in the attribute: for gender, same template, emotion word and race (names of one race, or noun phrases);
for race, same template, emotion word and gender (names only). Each side of a pair is the mean score of
its sentences; the gap is the mean over pairs of (female - male) or (African-American - European), tested
with a paired t-test and a Wilcoxon signed-rank test.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from tunelab.errors import DataError

COLUMNS = ("Sentence", "Template", "Person", "Gender", "Race", "Emotion", "Emotion word")
GENDER, RACE = ("female", "male"), ("African-American", "European")


def read(path: str | Path) -> list[dict]:
    """Rows of the EEC CSV; a missing column or an unexpected gender/race value names the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(
            f"{path}: not an EEC file; missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})"
        )
    rows = []
    for n, r in enumerate(reader, start=2):
        if r["Gender"] not in GENDER or r["Race"] not in RACE + ("",):
            raise DataError(
                f"{path}:{n}: Gender must be female/male and Race African-American/European/empty; got {r['Gender']!r}, {r['Race']!r}"
            )
        rows.append({**{c: r[c] for c in COLUMNS}, "line": n})
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def gaps(rows: list[dict], scores: list[float]) -> dict:
    """Gender and race gaps overall and per emotion, each with its paired tests."""
    emotion_of = {(r["Template"], r["Emotion word"]): r["Emotion"] or "none" for r in rows}
    out = {}
    for attribute, names in (("gender", GENDER), ("race", RACE)):
        col, ctx = ("Gender", "Race") if attribute == "gender" else ("Race", "Gender")
        cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r, s in zip(rows, scores):
            if attribute == "race" and not r["Race"]:
                continue
            cells[(r["Template"], r["Emotion word"], r[ctx])][r[col]].append(s)
        matched = [
            ((k[0], k[1]), sum(v[names[0]]) / len(v[names[0]]), sum(v[names[1]]) / len(v[names[1]]))
            for k, v in sorted(cells.items())
            if v[names[0]] and v[names[1]]
        ]
        per = {"overall": test([a for _, a, _ in matched], [b for _, _, b in matched])}
        for emo in sorted({emotion_of[k] for k, _, _ in matched}):
            sub = [(a, b) for k, a, b in matched if emotion_of[k] == emo]
            per[emo] = test([a for a, _ in sub], [b for _, b in sub])
        out[attribute] = {"gap": f"{names[0]} - {names[1]}", **per}
    return out


def test(a: list[float], b: list[float]) -> dict:
    """Mean gap (a - b), pair count, share of pairs with a > b, paired t-test and Wilcoxon signed-rank p-values."""
    from scipy import stats

    n = len(a)
    diffs = [x - y for x, y in zip(a, b)]
    res = {
        "pairs": n,
        "mean_a": sum(a) / n if n else None,
        "mean_b": sum(b) / n if n else None,
        "gap": sum(diffs) / n if n else None,
        "a_higher": sum(d > 0 for d in diffs) / n if n else None,
    }
    if n >= 2 and any(d != 0 for d in diffs):
        res["t_p"] = float(stats.ttest_rel(a, b).pvalue)
        res["wilcoxon_p"] = float(stats.wilcoxon(a, b).pvalue)
    else:
        res["t_p"] = res["wilcoxon_p"] = 1.0
    res["significant"] = bool(res["t_p"] < 0.05)
    return res
