"""Retrieval with a bi-encoder: (query, item) text pairs, one encoder for both, trained contrastively.

Each text is embedded as the mean of its last hidden states under the attention mask, then L2-normalised. The
loss is InfoNCE with sampled negatives: query i must score its own item above ``task.negatives`` items drawn (seeded,
once, when the split is encoded) from the other distinct items of the training file, cross-entropy over cosine /
temperature. Negatives are per row, not the batch's other items (sentence-transformers' in-batch negatives), so the
loss is a sum over rows like every other task's: micro-batches, gradient accumulation and several processes add up
to one large batch, and uniformly drawn negatives teach what sets a user's item apart from the catalogue.
Rows are ``sources.Row`` with ``text`` = query and ``text_pair`` = item (``data.text_pair_column``).
torch is imported inside functions.
"""

from __future__ import annotations

import random
from functools import partial
from typing import Literal

from pydantic import Field

from tunelab.data.sources import Row
from tunelab.errors import DataError
from tunelab.schema import Strict
from tunelab.tasks.base import ItemLogits, Prepared, Table, UnlabelledTask
from tunelab.training.evaluation import Evaluator, Metric
from tunelab.training.objective import Objective

ENCODE_BATCH = 64  # texts per forward pass when embedding outside training
RECALL_K = 10
TEMPERATURE = 0.05  # sentence-transformers' default scale of 20


class Config(Strict):
    """The ``task:`` section of retrieval (query column = data.text_column, item column = data.text_pair_column)."""

    name: Literal["retrieval"] = "retrieval"
    temperature: float = Field(
        TEMPERATURE, gt=0, le=1, description="Softmax temperature of the contrastive loss (cosine / temperature)."
    )
    negatives: int = Field(
        7, ge=1, description="Sampled negative items per query, drawn from the other distinct training items."
    )


class Retrieval(UnlabelledTask):
    """Query and item embedded by one encoder; cosine similarity ranks items for a query."""

    name = "retrieval"
    Config = Config
    auto_class = "AutoModel"
    row_kind = "text"
    metrics = (
        Metric("mrr", True, "mean reciprocal rank of each dev query's own item among all distinct dev items"),
        Metric("recall_at_10", True, "share of dev queries whose own item is in the top 10 of all distinct dev items"),
        Metric("loss", False, "contrastive loss on dev (each query against its own sampled negatives)"),
    )

    def check(self, cfg) -> None:
        if cfg.data.text_pair_column is None:
            raise ValueError(
                "data.text_pair_column: retrieval learns (query, item) pairs; set the column of the item text"
            )

    def read(self, cfg, path: str, with_labels: bool = True) -> Table:
        from tunelab.tasks.classification import read_text_table

        table = read_text_table(cfg, path, with_labels=False)  # pairs carry no label
        return Table(table.rows, table.skipped)

    def prepare(self, cfg, tokenizer, labels, splits, log) -> Prepared:
        from tunelab.tasks.classification import split_source

        k, seed = cfg.task.negatives, cfg.train.seed
        feats = {}
        for split, rows in splits.items():  # dev/test draw from their own items, as `tunelab eval` on the file does
            pool = distinct_items(rows, k, split_source(cfg, split))
            feats[split] = encode(
                rows, tokenizer, cfg.model.max_length, pool, k, seed if split == "train" else seed + 1
            )
        log(
            f"retrieval: {len(set(r.text_pair for r in splits['train']))} distinct training items; {k} negatives per query"
        )
        collate = partial(pad_pairs, pad_id=tokenizer.pad_token_id)
        temp = cfg.task.temperature
        dev = evaluator(feats["dev"], collate, temp)
        test = evaluator(feats["test"], collate, temp) if "test" in feats else None
        objective = Objective(self.forward, partial(pair_loss, temperature=temp), count)
        return Prepared(feats, collate, objective, dev, dev, test)

    def forward(self, model, batch: dict) -> dict:
        query = embed(model, batch["input_ids"], batch["attention_mask"])  # (B, d)
        item = embed(model, batch["item_input_ids"], batch["item_attention_mask"])  # (B, d)
        negs = embed(model, batch["neg_input_ids"], batch["neg_attention_mask"])  # (B * k, d)
        return {"query": query, "item": item, "negatives": negs.view(query.shape[0], -1, query.shape[1])}

    def loss(self, outputs: dict, batch: dict):
        return pair_loss(outputs, batch)

    def item_logits(self, outputs: dict, batch: dict) -> ItemLogits:
        import torch

        logits = candidate_scores(outputs)  # (B, 1 + k): own item first, then the sampled negatives
        rows = torch.arange(logits.shape[0], device=logits.device)
        return ItemLogits(rows, torch.zeros_like(rows), logits)

    def evaluator(self, run, rows: list[Row], source: str, log) -> Evaluator:
        k = run.cfg.task.negatives
        pool = distinct_items(rows, k, source)
        feats = encode(rows, run.tokenizer, run.cfg.model.max_length, pool, k, run.cfg.train.seed + 1)
        collate = partial(pad_pairs, pad_id=run.tokenizer.pad_token_id)
        return evaluator(feats, collate, run.cfg.task.temperature)

    def parse_inputs(self, lines, source: str) -> list[Row]:
        from tunelab.tasks.classification import parse_lines

        return parse_lines(lines, source)

    def predict(self, run, inputs: list[Row]) -> list[dict]:
        """A query alone: its ``embedding``; a (text, text_pair) input: also their cosine ``score``."""
        length = run.cfg.model.max_length
        queries = embed_distinct(run.model, run.tokenizer, [r.text for r in inputs], length)
        if inputs and inputs[0].text_pair is not None:
            items = embed_distinct(run.model, run.tokenizer, [r.text_pair for r in inputs], length)
            scores = (queries * items).sum(-1).tolist()
            return [{"text": r.text, "text_pair": r.text_pair, "score": round(s, 6)} for r, s in zip(inputs, scores)]
        return [{"text": r.text, "embedding": [round(x, 6) for x in q.tolist()]} for r, q in zip(inputs, queries)]

    def reference(self, row: Row) -> tuple[Row, dict]:
        """The (query, own item) pair, scored by ``predict``; the answer names the item the query belongs with."""
        return Row(row.text, row.text_pair, None, row.line), {"text_pair": row.text_pair}

    def prompt_template(self, run) -> None:
        return None

    def prompts(self, rows: list) -> list:
        return []


# ---------------------------------------------------------------- pure parts


def distinct_items(rows: list[Row], k: int, source: str) -> list[str]:
    """The distinct item texts of ``rows`` in a fixed order; negatives are drawn from them."""
    pool = sorted({r.text_pair for r in rows})
    if len(pool) <= k:
        raise DataError(
            f"{source}: {len(pool)} distinct items, too few to draw task.negatives={k} others for each query; "
            "lower task.negatives or add rows"
        )
    return pool


def sample_negatives(own: str, pool: list[str], k: int, rng: random.Random) -> list[str]:
    """``k`` distinct items of ``pool`` other than ``own`` (``pool`` holds more than ``k`` items)."""
    out: list[str] = []
    while len(out) < k:
        item = pool[rng.randrange(len(pool))]
        if item != own and item not in out:
            out.append(item)
    return out


def encode(rows: list[Row], tokenizer, max_length: int, pool: list[str], k: int, seed: int) -> list[dict]:
    """Query, item and ``k`` negative items (drawn from ``pool``, seeded) token ids per row (no padding)."""
    if not rows:
        return []
    rng = random.Random(seed)
    negs = [sample_negatives(r.text_pair, pool, k, rng) for r in rows]
    q = tokenizer([r.text for r in rows], truncation=True, max_length=max_length)
    i = tokenizer([r.text_pair or "" for r in rows], truncation=True, max_length=max_length)
    texts = sorted({t for ns in negs for t in ns})
    tok = dict(zip(texts, tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])) if texts else {}
    return [
        {
            "input_ids": q["input_ids"][n],
            "attention_mask": q["attention_mask"][n],
            "item_input_ids": i["input_ids"][n],
            "item_attention_mask": i["attention_mask"][n],
            "neg_input_ids": [tok[t] for t in negs[n]],
            "_item": rows[n].text_pair,
        }
        for n in range(len(rows))
    ]


def pad_pairs(features: list[dict], pad_id: int) -> dict:
    """Each side right-padded to its own longest: queries (B, Tq), items (B, Ti), negatives (B * k, Tn)."""
    from tunelab.data.collate import pad_batch

    def side(seqs: list[list[int]]) -> dict:
        return pad_batch([{"input_ids": s, "attention_mask": [1] * len(s)} for s in seqs], pad_id)

    query = pad_batch([{k: f[k] for k in ("input_ids", "attention_mask")} for f in features], pad_id)
    item = side([f["item_input_ids"] for f in features])
    negs = side([s for f in features for s in f["neg_input_ids"]])
    return {
        **query,
        "item_input_ids": item["input_ids"],
        "item_attention_mask": item["attention_mask"],
        "neg_input_ids": negs["input_ids"],
        "neg_attention_mask": negs["attention_mask"],
    }


def count(batch: dict) -> int:
    return int(batch["input_ids"].shape[0])


def embed(model, input_ids, attention_mask):
    """(B, d) L2-normalised mean of the encoder's last hidden states (B, T, d) under the attention mask."""
    import torch.nn.functional as F

    hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, d)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)  # (B, d)
    return F.normalize(pooled.float(), dim=-1)


def candidate_scores(outputs: dict):
    """(B, 1 + k) cosines of each query with its own item (column 0) and its k negatives."""
    import torch

    own = (outputs["query"] * outputs["item"]).sum(-1, keepdim=True)  # (B, 1)
    negs = torch.einsum("bd,bkd->bk", outputs["query"], outputs["negatives"])  # (B, k)
    return torch.cat([own, negs], dim=1)


def pair_loss(outputs: dict, batch: dict, temperature: float = TEMPERATURE):
    """(summed InfoNCE over rows, rows): each query's own item against its sampled negatives."""
    return contrastive_loss(candidate_scores(outputs), temperature), count(batch)


def contrastive_loss(scores, temperature: float):
    """Summed InfoNCE: each row of cosines (B, 1 + k) / temperature must pick column 0 (the row's own item)."""
    import torch
    import torch.nn.functional as F

    logits = scores.float() / temperature  # (B, 1 + k)
    return F.cross_entropy(
        logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device), reduction="sum"
    )


def embed_texts(model, tokenizer, texts: list[str], max_length: int, batch_size=ENCODE_BATCH):
    """(N, d) embeddings of ``texts`` in order (no grad, length-sorted batches, the model's device)."""
    import torch

    device = next(model.parameters()).device
    out = torch.empty(len(texts), 0)
    order = sorted(range(len(texts)), key=lambda n: len(texts[n]))
    chunks = {}
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tokenizer([texts[n] for n in idx], truncation=True, max_length=max_length, padding=True)
            ids = torch.tensor(enc["input_ids"], device=device)
            mask = torch.tensor(enc["attention_mask"], device=device)
            for n, e in zip(idx, embed(model, ids, mask).cpu()):
                chunks[n] = e
    if texts:
        out = torch.stack([chunks[n] for n in range(len(texts))])
    return out


def embed_distinct(model, tokenizer, texts: list[str], max_length: int, batch_size=ENCODE_BATCH):
    """(N, d) embeddings of ``texts`` in order, each distinct text embedded once: ranking many candidates per user
    repeats every history (and popular items) many times."""
    distinct = sorted(set(texts))
    index = {t: n for n, t in enumerate(distinct)}
    emb = embed_texts(model, tokenizer, distinct, max_length, batch_size=batch_size)  # (distinct, d)
    return emb[[index[t] for t in texts]] if texts else emb  # (N, d)


def pair_scores(model, tokenizer, pairs: list[tuple[str, str]], max_length: int, batch_size=ENCODE_BATCH) -> list:
    """Cosine of each (query, item) pair; each distinct text is embedded once."""
    n = len(pairs)
    emb = embed_distinct(model, tokenizer, [q for q, _ in pairs] + [i for _, i in pairs], max_length, batch_size)
    return [float(emb[k] @ emb[n + k]) for k in range(n)]


def ranking_metrics(query, items, own: list[int], k: int = RECALL_K) -> dict:
    """MRR and recall@k of each query's own item (index into ``items``) among all ``items``; ties count against it."""
    scores = query @ items.T  # (queries, items)
    target = scores.gather(1, _column(own, scores))  # (queries, 1)
    rank = (scores >= target).sum(1) - 1  # 0-based: the other items scored at least as high
    return {
        "mrr": float((1.0 / (rank.float() + 1)).mean()) if len(own) else 0.0,
        f"recall_at_{k}": float((rank < k).float().mean()) if len(own) else 0.0,
    }


def _column(own: list[int], like):
    import torch

    return torch.tensor(own, device=like.device).unsqueeze(1)


def evaluator(features: list[dict], collate, temperature: float, batch_size: int = 64) -> Evaluator:
    """score: (query embedding, item embedding, loss against its sampled negatives) per example; summarize: the
    ranking of each query's own item among the distinct dev items, and the mean loss."""

    def score(model, indices: list[int]) -> list:
        import torch

        device = next(model.parameters()).device
        out = []
        for s in range(0, len(indices), batch_size):
            batch = collate([features[i] for i in indices[s : s + batch_size]])
            batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            q = embed(model, batch["input_ids"], batch["attention_mask"])
            it = embed(model, batch["item_input_ids"], batch["item_attention_mask"])
            negs = embed(model, batch["neg_input_ids"], batch["neg_attention_mask"]).view(q.shape[0], -1, q.shape[1])
            scores = candidate_scores({"query": q, "item": it, "negatives": negs})  # (B, 1 + k)
            losses = [float(contrastive_loss(row[None], temperature)) for row in scores]
            out += list(zip(q.cpu(), it.cpu(), losses))
        return out

    def summarize(results: list) -> dict:
        import torch

        if not results:
            return {"mrr": 0.0, f"recall_at_{RECALL_K}": 0.0, "loss": 0.0}
        names = [f["_item"] for f in features]
        distinct = {n: i for i, n in reversed(list(enumerate(names)))}  # first occurrence of each item text
        query = torch.stack([q for q, _, _ in results])
        items = torch.stack([results[i][1] for i in sorted(distinct.values())])
        slot = {i: n for n, i in enumerate(sorted(distinct.values()))}
        own = [slot[distinct[n]] for n in names]
        return {**ranking_metrics(query, items, own), "loss": sum(x for _, _, x in results) / len(results)}

    return Evaluator(len(features), score, summarize)
