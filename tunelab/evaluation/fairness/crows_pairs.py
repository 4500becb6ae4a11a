"""CrowS-Pairs (Nangia et al., 2020) for causal LMs: how often the model prefers the more stereotyping sentence.

Each pair differs in a few words (the group named). CrowS-Pairs scores a masked LM by the pseudo-log-likelihood
of the tokens the two sentences share, given the differing ones. The causal counterpart used here: align
the two token sequences (difflib), and sum log p(token | prefix) over the shared (unmodified) tokens only;
the full-sentence log-likelihood is reported as well. The preference rate is the share of pairs where
sent_more scores higher; 50% is unbiased. A two-sided binomial test says whether a rate differs from 50%.
"""

from __future__ import annotations

import csv
import difflib
from collections import defaultdict
from pathlib import Path

import torch

from tunelab.errors import DataError

COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


def read(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    reader = csv.DictReader(text.splitlines(keepends=True))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: not a CrowS-Pairs file; missing column(s) {', '.join(missing)}")
    rows = []
    for r in reader:
        if not r["sent_more"].strip() or not r["sent_less"].strip():
            raise DataError(f"{path}:{reader.line_num}: empty sentence")
        rows.append({c: r[c] for c in COLUMNS} | {"line": reader.line_num})
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


@torch.no_grad()
def token_logprobs(model, tokenizer, sentences: list[str], batch_size: int = 16) -> list[tuple[list[int], list[float]]]:
    """Per sentence: its token ids and log p of each given the ones before it (the first token is conditioned on
    the BOS token, or EOS when the tokenizer has none)."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(sentences), batch_size):
        ids = [[start] + tokenizer(t, add_special_tokens=False)["input_ids"] for t in sentences[s : s + batch_size]]
        width = max(len(x) for x in ids)
        x = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in ids], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids], device=device)
        logp = model(input_ids=x, attention_mask=mask).logits.float().log_softmax(-1)  # (batch, width, vocab)
        picked = logp[:, :-1].gather(-1, x[:, 1:, None]).squeeze(-1).cpu()  # (batch, width - 1)
        for r, lp in zip(ids, picked):
            out.append((r[1:], lp[: len(r) - 1].tolist()))
    return out


def shared_score(a: tuple[list[int], list[float]], b: tuple[list[int], list[float]]) -> tuple[float, float]:
    """Sum of log-probs over the tokens the two sentences share (difflib matching blocks), for each sentence."""
    matcher = difflib.SequenceMatcher(a=a[0], b=b[0], autojunk=False)
    sa = sb = 0.0
    for block in matcher.get_matching_blocks():
        sa += sum(a[1][block.a : block.a + block.size])
        sb += sum(b[1][block.b : block.b + block.size])
    return sa, sb


def evaluate(model, tokenizer, rows: list[dict], batch_size: int = 16) -> dict:
    """Preference rates (shared-token score and full-sentence log-likelihood) overall and per bias type."""
    more = token_logprobs(model, tokenizer, [r["sent_more"] for r in rows], batch_size)
    less = token_logprobs(model, tokenizer, [r["sent_less"] for r in rows], batch_size)
    prefs: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for r, m, ls in zip(rows, more, less):
        sm, sl = shared_score(m, ls)
        prefs[r["bias_type"]].append((sm > sl, sum(m[1]) > sum(ls[1])))
    every = [p for v in prefs.values() for p in v]
    return {
        "pairs": len(rows),
        "overall": _rates(every),
        "bias_types": {k: _rates(v) for k, v in sorted(prefs.items(), key=lambda kv: -len(kv[1]))},
    }


def _rates(prefs: list[tuple[bool, bool]]) -> dict:
    from scipy.stats import binomtest

    n = len(prefs)
    k_shared, k_full = sum(a for a, _ in prefs), sum(b for _, b in prefs)
    return {
        "pairs": n,
        "stereotype_rate": k_shared / n,
        "p_value": float(binomtest(k_shared, n, 0.5).pvalue),
        "stereotype_rate_full_sentence": k_full / n,
    }
