"""`tunelab data scrub`: replace personal data in data files, or measure the detector on annotated text.

Detection = the pattern recognizers in ``pii`` plus, for names, a tunelab token-classification run (``--ner``,
e.g. minilm-l6 trained on WikiANN by ``bench/pii_ner.py``). Replacement is a placeholder (``<EMAIL>``), a salted
hash (``<EMAIL:9f86d081>``) or a consistent pseudonym; the reversible mapping goes to a separate file only when
asked. The logs written next to the data hold positions and types, never the personal data itself.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import Counter
from pathlib import Path

from tunelab.data import pii, rewrite, tagging
from tunelab.data.corpus import Inputs
from tunelab.errors import DataError, TunelabError

# presidio-research annotation types -> tunelab types (the others, e.g. AGE or TITLE, are not detected)
GOLD_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "EMAIL": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "PHONE": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IBAN": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_SSN": "US_SSN",
    "DATE_TIME": "DATE",
    "DATE": "DATE",
    "STREET_ADDRESS": "ADDRESS",
    "ADDRESS": "ADDRESS",
    "PERSON": "PERSON",
    "PER": "PERSON",
    "ORGANIZATION": "ORGANIZATION",
    "ORG": "ORGANIZATION",
    "GPE": "LOCATION",
    "LOCATION": "LOCATION",
    "LOC": "LOCATION",
    "DOMAIN_NAME": "URL",
    "URL": "URL",
}
_FIRST = (
    "Alex Sam Jordan Taylor Morgan Casey Riley Jamie Robin Drew Avery Quinn Rowan Sky Charlie Emery Finley Harper "
    "Jesse Kai"
).split()
_LAST = (
    "Smith Lee Brown Garcia Miller Davis Wilson Moore Clark Lewis Walker Young King Hill Green Adams Baker Nelson "
    "Carter Reed"
).split()


def parse_types(text: str) -> tuple[str, ...]:
    types = tuple(t.strip().upper() for t in text.split(",") if t.strip())
    unknown = [t for t in types if t not in pii.TYPES]
    if unknown or not types:
        raise TunelabError(
            f"--types: unknown type {unknown[0] if unknown else '(none)'!r}; valid: {', '.join(pii.TYPES)}"
        )
    return types


class Replacer:
    """Replacement text for each found value; the same (type, value) always gets the same replacement."""

    def __init__(self, mode: str, salt: str = ""):
        self.mode, self.salt = mode, salt or secrets.token_hex(16)
        self.mapping: dict[str, dict] = {}  # replacement -> {"type", "original"}
        self._given: dict[tuple[str, str], str] = {}
        self._count: Counter = Counter()

    def __call__(self, kind: str, value: str) -> str:
        key = (kind, value)
        if self.mode == "placeholder":  # the same for every value: nothing to disambiguate or reverse
            return f"<{kind}>"
        if key not in self._given:
            new = self._make(kind, value)
            while (
                new in self.mapping and self.mapping[new]["original"] != value
            ):  # two originals, one pseudonym: disambiguate
                self._count[kind] += 1
                new = self._make(kind, value, self._count[kind])
            self._given[key] = new
            self.mapping[new] = {"type": kind, "original": value}
        return self._given[key]

    def _make(self, kind: str, value: str, bump: int = 0) -> str:
        digest = hashlib.sha256(f"{self.salt}\x00{kind}\x00{value}\x00{bump}".encode()).hexdigest()
        if self.mode == "hash":
            return f"<{kind}:{digest[:8]}>"
        return pseudonym(kind, int(digest[:12], 16))


def pseudonym(kind: str, n: int) -> str:
    """A fake value of the right shape for a type, chosen by the integer ``n``."""
    if kind == "PERSON":
        return f"{_FIRST[n % len(_FIRST)]} {_LAST[(n // len(_FIRST)) % len(_LAST)]}"
    if kind == "EMAIL":
        return f"user{n % 100000}@example.com"
    if kind == "PHONE":
        return f"555-01{n % 100:02d}"
    if kind == "URL":
        return f"https://example.com/{n % 100000}"
    return f"{kind.title().replace('_', '')}-{n % 100000}"


def biased_tags(word_logp: dict, n_words: int, labels: list[str], threshold: float) -> list[str]:
    """Valid IOB2 tags: a word is part of a name when the model gives it a name probability (1 - P(O)) of at
    least ``threshold``, then the likeliest name tag; 0.5 is close to plain argmax decoding, lower values mask
    more (a scrubber's misses leak data, its extra masks only cost a word)."""
    tags = ["O"] * n_words
    o = labels.index("O")
    for w, lp in word_logp.items():  # lp: (num_labels,) log-probabilities
        p = lp.exp()
        if 1 - float(p[o]) >= threshold:
            p[o] = -1.0
            tags[w] = labels[int(p.argmax())]
    return tagging.repair(tags)


def replace_spans(text: str, spans: list[pii.Span], replacer: Replacer) -> str:
    """``text`` with each (non-overlapping, sorted) span replaced."""
    out, pos = [], 0
    for sp in spans:
        out += [text[pos : sp.start], replacer(sp.type, sp.text)]
        pos = sp.end
    return "".join(out + [text[pos:]])


class Detector:
    """Patterns for every requested type plus, if a NER run is given, names from it."""

    def __init__(self, types: tuple[str, ...], ner_run: str | None = None, log=None, name_threshold: float = 0.3):
        self.types, self.name_threshold = types, name_threshold
        self.loaded = None
        wanted = [t for t in types if t in pii.NAME_TYPES]
        if ner_run:
            from tunelab import runs
            from tunelab.tasks.token_classification import TokenClassification

            self.loaded = runs.load_run(ner_run)
            if not isinstance(self.loaded.task, TokenClassification):  # names are decoded from its word scores
                raise TunelabError(
                    f"{ner_run}: --ner needs a token_classification run, found a {self.loaded.cfg.task.name} run"
                )
        elif wanted and log:
            log(f"note: no --ner run, so {', '.join(wanted)} are not detected (train one: bench/pii_ner.py)")

    def names(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        """(start, end, type) name spans per text from the NER run, decoded with ``name_threshold``."""
        if self.loaded is None:
            return [[] for _ in texts]
        from functools import partial

        from tunelab.data import conll
        from tunelab.data.collate import pad_batch
        from tunelab.tasks import token_classification as tc

        rows, keep = [], []
        for k, t in enumerate(texts):
            tokens, offsets = conll.tokenize(t)
            if tokens:
                rows.append(conll.Sentence(tokens, None, k, t, offsets))
                keep.append(k)
        out: list[list[tuple[int, int, str]]] = [[] for _ in texts]
        if not rows:
            return out
        lr = self.loaded
        feats = tc.encode(rows, lr.tokenizer, lr.labels, lr.cfg.model.max_length, "input", tc.Windowing.of(lr.cfg.task))
        scores, _ = tc.window_scores(lr.model, feats, partial(pad_batch, pad_id=lr.tokenizer.pad_token_id))
        merged = tc.merge_windows(feats, scores)
        for s, (k, row) in enumerate(zip(keep, rows)):
            tags = biased_tags(merged[s], len(row.tokens), lr.labels, self.name_threshold)
            for a, b, kind in tagging.spans(tags):
                if kind in pii.NER_TYPES:
                    out[k].append((row.offsets[a][0], row.offsets[b - 1][1], pii.NER_TYPES[kind]))
        return out

    def find(self, texts: list[str], batch: int = 256) -> list[list[pii.Span]]:
        out = []
        for s in range(0, len(texts), batch):
            chunk = texts[s : s + batch]
            for t, names in zip(chunk, self.names(chunk)):
                out.append(pii.find(t, self.types, names))
        return out


# ---------------------------------------------------------------- scrubbing files


def run(
    data: Inputs,
    out: Path,
    *,
    types,
    replace: str,
    mapping: str | None,
    salt: str,
    ner_run: str | None,
    log,
    name_threshold: float = 0.3,
) -> dict:
    from tunelab.data.clean import changed_record, output_name

    detector = Detector(types, ner_run, log, name_threshold)
    replacer = Replacer(replace, salt)
    summary, taken = {}, set()
    findings = (out / "findings.jsonl").open("w", encoding="utf-8")
    for split in data.splits:
        rf = rewrite.read_raw(split.path, split.fmt, split.lines_as)
        texts = {it.line: _texts(data.kind, it) for it in split.items}
        flat = [(line, t) for line, ts in texts.items() for t in ts]
        found = iter(detector.find([t for _, t in flat]))  # one batched pass (the NER model runs in batches)
        spans = {line: [next(found) for _ in ts] for line, ts in texts.items()}
        items = {it.line: it for it in split.items}
        counts: Counter = Counter()
        keep = []
        for rec in (r for r in rf.records if r.data):
            it = items.get(rec.line)
            if it is None:  # a header or an unreadable row
                keep.append(_scrub_raw(rf, rec, detector, replacer, counts))
                continue
            for k, sps in enumerate(spans[rec.line]):
                for sp in sps:
                    counts[sp.type] += 1
                    findings.write(
                        json.dumps(
                            {
                                "file": split.path,
                                "line": rec.line,
                                "field": k,
                                "type": sp.type,
                                "start": sp.start,
                                "end": sp.end,
                            }
                        )
                        + "\n"
                    )
            if any(spans[rec.line]):
                rec = changed_record(
                    data, rf, rec, it, _new_value(data.kind, it, texts[rec.line], spans[rec.line], replacer)
                )
            keep.append(rec)
        name = output_name(split, taken)
        (out / name).write_text(rewrite.render(rf, keep), encoding="utf-8")
        summary[split.name] = {"input": split.path, "output": str(out / name), "found": dict(sorted(counts.items()))}
    findings.close()
    if mapping:
        Path(mapping).write_text(json.dumps(replacer.mapping, indent=1, ensure_ascii=False), encoding="utf-8")
    return summary


def _texts(kind: str, it) -> list[str]:
    if kind == "text":
        return [it.row.text] + ([it.row.text_pair] if it.row.text_pair is not None else [])
    if kind == "tokens":
        return [it.row.text]
    return [m["content"] for m in it.row.messages] if it.row.messages is not None else [it.row.text]


def _new_value(kind: str, it, texts: list[str], spans: list[list[pii.Span]], replacer: Replacer):
    new = [replace_spans(t, s, replacer) for t, s in zip(texts, spans)]
    if kind == "text":
        return new[0], (new[1] if len(new) > 1 else None)
    if kind == "tokens":
        return replace_tokens(it.row, spans[0], replacer)
    if it.row.messages is None:  # a plain-text document
        return new[0]
    return [{**m, "content": c} for m, c in zip(it.row.messages, new)]


def replace_tokens(sentence, spans: list[pii.Span], replacer: Replacer) -> list[str]:
    """Tokens with every token inside a span replaced by a part of that span's replacement (as many tokens as before)."""
    tokens = list(sentence.tokens)
    for sp in spans:
        inside = [k for k, (a, b) in enumerate(sentence.offsets) if a < sp.end and b > sp.start]
        parts = replacer(sp.type, sp.text).split() or ["_"]
        for n, k in enumerate(inside):
            tokens[k] = parts[min(n, len(parts) - 1)]
    return tokens


def _scrub_raw(rf, rec, detector: Detector, replacer: Replacer, counts: Counter):
    """An unreadable record is copied with its raw text scrubbed by the patterns (it may hold personal data too)."""
    spans = pii.find(rec.raw, tuple(t for t in detector.types if t not in pii.NAME_TYPES))
    for sp in spans:
        counts[sp.type] += 1
    return rewrite.RawRecord(rec.line, replace_spans(rec.raw, spans, replacer), rec.fields) if spans else rec


# ---------------------------------------------------------------- evaluation


def read_annotated(path: str) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """(text, gold spans with tunelab types) from presidio-research JSON or JSONL with text + spans."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found")
    raw = p.read_text(encoding="utf-8")
    try:
        records = (
            json.loads(raw) if raw.lstrip().startswith("[") else [json.loads(x) for x in raw.splitlines() if x.strip()]
        )
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    out = []
    for n, r in enumerate(records, start=1):
        text = r.get("full_text", r.get("text")) if isinstance(r, dict) else None
        if not isinstance(text, str) or not isinstance(r.get("spans"), list):
            raise DataError(f'{path}: record {n}: expected {{"full_text" or "text", "spans": [...]}}')
        gold = []
        for s in r["spans"]:
            kind = s.get("entity_type", s.get("label"))
            start, end = s.get("start_position", s.get("start")), s.get("end_position", s.get("end"))
            if not isinstance(start, int) or not isinstance(end, int):
                raise DataError(f"{path}: record {n}: span without integer start/end: {s}")
            gold.append((start, end, GOLD_TYPES.get(kind, f"other:{kind}")))
        out.append((text, gold))
    return out


def matches(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Two spans match when they share at least half of the shorter one's characters."""
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    return overlap > 0 and overlap >= 0.5 * min(a[1] - a[0], b[1] - b[0])


def score(gold: list[list[tuple[int, int, str]]], pred: list[list[tuple[int, int, str]]], types) -> dict:
    """Per-type precision and recall: a prediction is right if it matches a gold span of its type (``matches``)."""
    per = {}
    for t in types:
        g_all = p_all = g_hit = p_hit = 0
        for gs, ps in zip(gold, pred):
            g = [x for x in gs if x[2] == t]
            p = [x for x in ps if x[2] == t]
            g_all += len(g)
            p_all += len(p)
            g_hit += sum(any(matches(x[:2], y[:2]) for y in p) for x in g)
            p_hit += sum(any(matches(y[:2], x[:2]) for x in g) for y in p)
        per[t] = {
            "gold": g_all,
            "predicted": p_all,
            "precision": round(p_hit / p_all, 4) if p_all else 0.0,
            "recall": round(g_hit / g_all, 4) if g_all else 0.0,
        }
    return per


def evaluate(path: str, types, out: Path, *, ner_run: str | None = None, log=None, name_threshold: float = 0.3) -> dict:
    data = read_annotated(path)
    detector = Detector(types, ner_run, log, name_threshold)
    found = detector.find([t for t, _ in data])
    pred = [[(s.start, s.end, s.type) for s in f] for f in found]
    gold = [g for _, g in data]
    evaluated = [t for t in types if any(x[2] == t for gs in gold for x in gs)]
    result = {
        "file": path,
        "texts": len(data),
        "ner_run": ner_run,
        "name_threshold": name_threshold,
        "match_rule": "overlap >= half of the shorter span, same type",
        "per_type": score(gold, pred, evaluated),
        "not_detected_types": dict(
            Counter(x[2].split(":", 1)[1] for gs in gold for x in gs if x[2].startswith("other:"))
        ),
        "misses": _misses(data, pred),
    }
    (out / "evaluation.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "evaluation.md").write_text(_eval_markdown(result), encoding="utf-8")
    return result


def _misses(data, pred, limit: int = 50) -> list[dict]:
    out = []
    for k, ((text, gold), ps) in enumerate(zip(data, pred)):
        for s, e, t in gold:
            if not t.startswith("other:") and not any(p[2] == t and matches((s, e), p[:2]) for p in ps):
                out.append({"record": k + 1, "type": t, "text": text[s:e]})
    return out[:limit]


def _eval_markdown(r: dict) -> str:
    lines = [
        f"# PII detection on {r['file']} ({r['texts']} texts)",
        "",
        f"Match rule: {r['match_rule']}. NER run: {r['ner_run']}.",
        "",
        "| type | gold | found | precision | recall |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t} | {m['gold']} | {m['predicted']} | {m['precision']:.3f} | {m['recall']:.3f} |"
        for t, m in r["per_type"].items()
    ]
    if r["not_detected_types"]:
        lines += [
            "",
            "Annotated types tunelab does not detect: "
            + ", ".join(f"{k} ({v})" for k, v in r["not_detected_types"].items()),
        ]
    return "\n".join(lines) + "\n"
