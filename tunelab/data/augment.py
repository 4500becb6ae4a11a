"""`tunelab data augment`: label-preserving new rows for small classification and NER training sets.

Operations (each a pure function of words, tags and a seeded ``random.Random``):
    synonym      replace up to n words by a WordNet synonym (or an embedding neighbour)   (EDA, Wei & Zou 2019)
    swap         swap two words, n times
    delete       delete each word with probability alpha (at least one word stays)
    insert       insert a synonym of a random word at a random position, n times
    entity-swap  NER: replace each entity by another entity of the same type from the training set
    paraphrase   classification: a causal LM (smollm2-135m) rewrites the text; kept only if a classifier agrees
                 with the row's label
with n = max(1, round(alpha * words)). For NER the EDA operations touch only words tagged O, so every entity
and its tags stay aligned. The original file is copied unchanged and the new rows are appended after it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tunelab.data import rewrite, tagging
from tunelab.data.corpus import Inputs, Item
from tunelab.errors import TunelabError

OPS = ("synonym", "swap", "delete", "insert", "entity-swap", "paraphrase")
STOPWORDS = frozenset(
    (
        "a an the and or but if of at by for with about against between into through during before after above "
        "below to from up down in out on off over under again further then once here there when where why how "
        "all any both each few more most other some such no nor not only own same so than too very s t can will "
        "just don should now i me my we our you your he him his she her it its they them their what which who whom "
        "this that these those am is are was were be been being have has had having do does did doing"
    ).split()
)
PARAPHRASE_PROMPT = "Rewrite the following text in different words, keeping its meaning and tone. Reply with the rewritten text only.\n\n{text}"


def parse_ops(text: str) -> list[str]:
    ops = [o.strip() for o in text.split(",") if o.strip()]
    unknown = [o for o in ops if o not in OPS]
    if unknown or not ops:
        raise TunelabError(f"--ops: unknown operation {unknown[0] if unknown else '(none)'!r}; valid: {', '.join(OPS)}")
    return ops


def n_changes(n_words: int, alpha: float) -> int:
    return max(1, round(alpha * n_words))


def synonym_replace(words: list[str], movable: list[bool], synonyms: dict, n: int, rng: random.Random) -> list[str]:
    """Replace up to ``n`` distinct non-stopword movable words that have synonyms (case of the first letter kept)."""
    out = list(words)
    cands = [i for i, w in enumerate(words) if movable[i] and w.lower() not in STOPWORDS and synonyms.get(w.lower())]
    rng.shuffle(cands)
    for i in cands[:n]:
        new = rng.choice(synonyms[words[i].lower()])
        out[i] = new.capitalize() if words[i][:1].isupper() else new
    return out


def swap(words: list[str], movable: list[bool], n: int, rng: random.Random) -> list[str]:
    """Swap the words at two random movable positions, ``n`` times."""
    out = list(words)
    pos = [i for i, m in enumerate(movable) if m]
    for _ in range(n if len(pos) > 1 else 0):
        a, b = rng.sample(pos, 2)
        out[a], out[b] = out[b], out[a]
    return out


def delete(
    words: list[str], tags: list[str], movable: list[bool], p: float, rng: random.Random
) -> tuple[list[str], list[str]]:
    """Drop each movable word with probability ``p``; at least one word is always left."""
    keep = [not m or rng.random() >= p for m in movable]
    if not any(keep):
        keep[rng.randrange(len(words))] = True
    return [w for w, k in zip(words, keep) if k], [t for t, k in zip(tags, keep) if k]


def insert(
    words: list[str], tags: list[str], movable: list[bool], synonyms: dict, n: int, rng: random.Random
) -> tuple[list[str], list[str]]:
    """Insert a synonym of a random movable word at a random position (tagged O, never inside an entity), ``n`` times."""
    out, out_tags = list(words), list(tags)
    for _ in range(n):
        cands = [w for w, m in zip(out, movable) if m and synonyms.get(w.lower())]
        if not cands:
            break
        new = rng.choice(synonyms[rng.choice(cands).lower()])
        slots = [k for k in range(len(out) + 1) if k == len(out_tags) or not out_tags[k].startswith("I-")]
        at = rng.choice(slots)
        out.insert(at, new)
        out_tags.insert(at, "O")
        movable = movable[:at] + [False] + movable[at:]
    return out, out_tags


def entity_swap(
    tokens: list[str], tags: list[str], pool: dict[str, list[list[str]]], rng: random.Random
) -> tuple[list[str], list[str]]:
    """Replace each entity by a random other entity of its type from ``pool`` (type -> entity token lists)."""
    out_t, out_g, pos = [], [], 0
    for a, b, kind in tagging.spans(tags):
        out_t += tokens[pos:a]
        out_g += tags[pos:a]
        choices = [e for e in pool.get(kind, []) if e != tokens[a:b]] or [tokens[a:b]]
        new = rng.choice(choices)
        out_t += new
        out_g += [f"B-{kind}"] + [f"I-{kind}"] * (len(new) - 1)
        pos = b
    return out_t + tokens[pos:], out_g + tags[pos:]


def entity_pool(items: list[Item]) -> dict[str, list[list[str]]]:
    pool: dict[str, list[list[str]]] = {}
    for it in items:
        for a, b, kind in tagging.spans(it.row.tags):
            pool.setdefault(kind, []).append(it.row.tokens[a:b])
    return pool


def eda(
    op: str, words: list[str], tags: list[str], synonyms: dict, alpha: float, rng: random.Random
) -> tuple[list[str], list[str]]:
    """One EDA operation on (words, tags); for classification pass tags all O."""
    movable = [t == "O" for t in tags]
    n = n_changes(sum(movable), alpha)
    if op == "synonym":
        return synonym_replace(words, movable, synonyms, n, rng), tags
    if op == "swap":
        return swap(words, movable, n, rng), tags
    if op == "delete":
        return delete(words, tags, movable, alpha, rng)
    return insert(words, tags, movable, synonyms, n, rng)


# ---------------------------------------------------------------- the command


def run(
    data: Inputs,
    out: Path,
    *,
    ops: list[str],
    copies: int,
    alpha: float,
    synonyms: str,
    wordnet_dir: str | None,
    paraphrase_model: str,
    filter_with: str,
    seed: int,
    log,
) -> dict:
    split = data.splits[0]
    if data.kind not in ("text", "tokens"):
        raise TunelabError(
            f"{split.path}: augmentation works on classification and NER data, found task {data.task.name}"
        )
    if data.kind == "text" and "entity-swap" in ops:
        raise TunelabError("--ops: entity-swap needs NER data (task token_classification)")
    if data.kind == "tokens" and "paraphrase" in ops:
        raise TunelabError("--ops: paraphrase works on classification data only (a paraphrase loses the token tags)")
    rng = random.Random(seed)
    syn = _synonyms(split.items, data.kind, synonyms, wordnet_dir) if {"synonym", "insert"} & set(ops) else {}
    if data.kind == "tokens":  # one token per word: multi-word synonyms would break the alignment
        syn = {w: single for w, s in syn.items() if (single := [x for x in s if " " not in x])}
    pool = entity_pool(split.items) if "entity-swap" in ops else {}
    new: list[tuple[Item, str, object]] = []  # (source item, op, new value)
    plan = [(it, ops[(k * copies + c) % len(ops)]) for k, it in enumerate(split.items) for c in range(copies)]
    for it, op in plan:
        if op != "paraphrase":
            new.append((it, op, _apply(data.kind, op, it, syn, pool, alpha, rng)))
    rejected = 0
    if "paraphrase" in ops:
        todo = [it for it, op in plan if op == "paraphrase"]
        kept, rejected = paraphrases(todo, split.items, paraphrase_model, filter_with, seed, log)
        new += [(it, "paraphrase", (text, it.row.text_pair)) for it, text in kept]
    return _write(data, split, new, out, rejected, ops)


def _apply(kind: str, op: str, it: Item, syn: dict, pool: dict, alpha: float, rng: random.Random):
    if kind == "text":
        words = it.row.text.split()
        return " ".join(eda(op, words, ["O"] * len(words), syn, alpha, rng)[0]), it.row.text_pair
    tokens, tags = it.row.tokens, it.row.tags
    if op == "entity-swap":
        return entity_swap(tokens, tags, pool, rng)
    return eda(op, tokens, tags, syn, alpha, rng)


def _synonyms(items: list[Item], kind: str, source: str, wordnet_dir: str | None) -> dict:
    if source == "wordnet":
        from tunelab.data import lexicon

        return lexicon.read_wordnet(lexicon.wordnet_dir(wordnet_dir))
    from tunelab.data import lexicon

    words = {w.lower() for it in items for w in (it.row.tokens if kind == "tokens" else it.row.text.split())}
    return lexicon.embedding_neighbours({w for w in words if w not in STOPWORDS})


def paraphrases(
    todo: list[Item], train: list[Item], model_name: str, filter_with: str, seed: int, log
) -> tuple[list, int]:
    """(kept (item, paraphrase) pairs, number rejected) for the items in ``todo`` (one paraphrase each)."""
    from tunelab.generation import target
    from tunelab.generation.config import GenerationConfig
    from tunelab.generation.decode import generate

    t = target.load(model_name)
    cfg = GenerationConfig(max_new_tokens=64, do_sample=True, temperature=0.8, top_p=0.9, seed=seed, batch_size=16)
    prompts = [[{"role": "user", "content": PARAPHRASE_PROMPT.format(text=it.row.text)}] for it in todo]
    if log:
        log(f"paraphrasing {len(prompts)} rows with {model_name}")
    outs = generate(t.model, t.tokenizer, prompts, cfg, template=t.template, log=log or (lambda m: None))
    texts = [clean_paraphrase(o.text) for o in outs]
    cand = [(it, x) for it, x in zip(todo, texts) if x and x.lower() != it.row.text.strip().lower()]
    agree = label_agreement([x for _, x in cand], [it.row.label for it, _ in cand], train, filter_with)
    kept = [c for c, ok in zip(cand, agree) if ok]
    return kept, len(todo) - len(kept)


def clean_paraphrase(text: str) -> str:
    """The first non-empty line of a generation, without quotes or a 'Rewritten text:' lead-in."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if ":" in line[:30] and line.split(":", 1)[0].lower().strip().startswith(("rewritten", "paraphrase", "here")):
        line = line.split(":", 1)[1].strip()
    return line.strip("\"'“” ")


def label_agreement(texts: list[str], labels: list[str], train: list[Item], filter_with: str) -> list[bool]:
    """Whether a classifier predicts each text's given label: 'none' accepts all; 'embedding' fits a logistic
    regression on minilm-l6 embeddings of the training rows; anything else is a tunelab classification run folder."""
    if filter_with == "none" or not texts:
        return [True] * len(texts)
    if filter_with == "embedding":
        from sklearn.linear_model import LogisticRegression

        from tunelab.data import labelnoise

        emb = labelnoise.embed([it.row.text for it in train] + texts)
        clf = LogisticRegression(max_iter=2000).fit(emb[: len(train)], [it.row.label for it in train])
        return [p == lab for p, lab in zip(clf.predict(emb[len(train) :]), labels)]
    from tunelab import runs

    loaded = runs.load_run(filter_with)
    if loaded.task.row_kind != "text" or not loaded.labels:
        raise TunelabError(f"{filter_with}: --filter needs a classification run, found a {loaded.cfg.task.name} run")
    task = loaded.task
    preds = task.predict(loaded, task.parse_inputs([json.dumps({"text": x}) for x in texts], "paraphrases"))
    return [p["label"] == lab for p, lab in zip(preds, labels)]


def _write(data: Inputs, split, new: list, out: Path, rejected: int, ops: list[str]) -> dict:
    from tunelab.data.clean import changed_record, output_name

    rf = rewrite.read_raw(split.path, split.fmt, split.lines_as)
    by_line = rf.by_line()
    records = [r for r in rf.records if r.data]
    log_rows, counts = [], {op: 0 for op in ops}
    for it, op, value in new:
        records.append(_new_record(data, rf, by_line[it.line], it, value, changed_record))
        counts[op] += 1
        text = value[0] if data.kind == "text" else " ".join(value[0])
        log_rows.append({"source": f"{split.path}:{it.line}", "op": op, "text": text})
    name = output_name(split, set())
    (out / name).write_text(rewrite.render(rf, records), encoding="utf-8")
    with (out / "augment.jsonl").open("w", encoding="utf-8") as fh:
        for row in log_rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {
        "input": split.path,
        "output": str(out / name),
        "original_rows": len(split.items),
        "new_rows": counts,
        "paraphrases_rejected_by_filter": rejected,
    }


def _new_record(data: Inputs, rf, rec, it: Item, value, changed_record):
    if data.kind == "text":
        return changed_record(data, rf, rec, it, value)
    tokens, tags = value
    prefix = data.cfg.task.token_prefix or ""
    if rf.fmt == "jsonl":
        obj = {k: v for k, v in rec.fields.items() if k not in ("text", "spans", "tokens", "tags")}
        return rewrite.with_object(rf, rec, {**obj, "tokens": tokens, "tags": tags})
    sep = "\t" if "\t" in rec.raw else " "
    return rewrite.with_lines(rec, [f"{prefix}{t}{sep}{g}" for t, g in zip(tokens, tags)])
