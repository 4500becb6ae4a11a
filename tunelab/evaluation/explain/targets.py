"""What is explained, per task: the scalar output f and the input positions it is attributed to.

- classification: f = probability of the predicted (or requested) class; words of the text(s).
- token classification: one explanation per predicted entity, f = mean probability of its predicted tags
  at the entity's first sub-words; words of the sentence.
- causal LM: one explanation per generated token, f = probability of that token given the prompt and the
  tokens generated before it; tokens of the prompt (and earlier generated tokens).

EXPLAINERS maps a task name (``cfg.task.name``) to its function ``(loaded_run, item, opts) -> dict``; ITEMS to
``(loaded_run, path) -> items`` read from a file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunelab.evaluation.explain import attribution as attr


@dataclass
class Options:
    steps: int = 50  # first number of integration steps (doubled until completeness holds)
    tolerance: float = 0.05  # completeness: |sum - (f(x) - f(baseline))| <= tolerance * |f(x) - f(baseline)|
    target: str | None = None  # classification: explain this label instead of the predicted one
    max_new_tokens: int = 12  # causal LM: tokens generated (and explained)
    raw: bool = False  # causal LM: --text is raw text to continue, not a user message
    temperature: float = 1.0  # classification: the run's fitted temperature (probabilities as predict gives them)


def _embeddings(model) -> torch.nn.Module:
    return model.get_input_embeddings()


def _special_mask(ids: list[int], tokenizer) -> torch.Tensor:
    special = set(tokenizer.all_special_ids)
    return torch.tensor([[int(i in special) for i in ids]])


def _rollout(model, inputs: dict) -> torch.Tensor:
    """(seq, seq) rollout matrix for one input, attentions computed with the eager kernel (sdpa returns none)."""
    with torch.no_grad(), eager_attention(model):
        out = model(**inputs, output_attentions=True)
    seq = inputs["input_ids"].shape[1]
    return attr.rollout([a[0].float() for a in out.attentions])[
        -seq:, -seq:
    ]  # prompt methods prepend virtual positions


class eager_attention:
    """Temporarily switch the model to eager attention so it can return attention weights."""

    def __init__(self, model):
        self.model, self.before = model, None

    def __enter__(self):
        from peft import PeftModel

        base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
        self.base = base
        self.before = base.config._attn_implementation
        if self.before != "eager":
            base.set_attn_implementation("eager")
        return self

    def __exit__(self, *exc):
        if self.before != "eager":
            self.base.set_attn_implementation(self.before)


# ---------------------------------------------------------------- classification


def classification(run, item: dict, opts: Options) -> dict:
    """item: {"text", optional "text_pair"}."""
    model, tok, labels = run.model, run.tokenizer, run.labels
    enc = tok(
        item["text"],
        item.get("text_pair"),
        truncation=True,
        max_length=run.cfg.model.max_length,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    extra = (mask, enc["token_type_ids"]) if "token_type_ids" in enc else (mask,)
    with torch.no_grad():
        logits = _class_logits(model, ids, *extra)[0]
    probs = torch.softmax(logits / opts.temperature, -1)
    pred = int(probs.argmax())
    target = labels.index(opts.target) if opts.target is not None else pred

    def forward(input_ids, attention_mask, token_type_ids=None):
        return torch.softmax(_class_logits(model, input_ids, attention_mask, token_type_ids) / opts.temperature, -1)[
            :, target
        ]

    special = _special_mask(ids[0].tolist(), tok)
    ig = attr.integrated_gradients(
        forward,
        _embeddings(model),
        ids,
        attr.baseline_ids(ids, special, tok.pad_token_id),
        extra,
        steps=opts.steps,
        tolerance=opts.tolerance,
    )
    roll = _rollout(model, {"input_ids": ids, **_named(extra)})[0]  # row of [CLS]: what flows into the classifier
    words = _segment_words(enc, item, ig.scores, roll.tolist(), special[0].tolist())
    return {
        "kind": "classification",
        "text": item["text"],
        **({"text_pair": item["text_pair"]} if item.get("text_pair") else {}),
        "label": labels[pred],
        "prob": float(probs[pred]),
        "target": labels[target],
        "target_prob": float(probs[target]),
        "words": words,
        "completeness": ig.completeness(opts.tolerance),
    }


def _class_logits(model, input_ids, attention_mask, token_type_ids=None):
    kw = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        kw["token_type_ids"] = token_type_ids
    return model(**kw).logits.float()  # (batch, classes)


def _named(extra: tuple) -> dict:
    return dict(zip(("attention_mask", "token_type_ids"), extra))


def _segment_words(enc, item: dict, ig: list[float], roll: list[float], special: list[int]) -> list[dict]:
    """Words of text (segment 0) and text_pair (segment 1) with summed IG and rollout scores."""
    seq_ids = enc.sequence_ids(0)
    offsets = [tuple(o) for o in enc["offset_mapping"][0].tolist()]
    out = []
    for seg, text in ((0, item["text"]), (1, item.get("text_pair"))):
        if text is None:
            continue
        keep = [i for i, s in enumerate(seq_ids) if s == seg]
        offs, spec = [offsets[i] for i in keep], [special[i] for i in keep]
        ig_words = attr.merge_words(text, offs, [ig[i] for i in keep], spec)
        roll_words = attr.merge_words(text, offs, [roll[i] for i in keep], spec)
        out += [
            {**w, "ig": w.pop("score"), "rollout": r["score"], "segment": seg} for w, r in zip(ig_words, roll_words)
        ]
    return out


# ---------------------------------------------------------------- token classification


def token_classification(run, item: dict, opts: Options) -> dict:
    """item: {"text"} raw text, or {"tokens": [...]}; one explanation per predicted entity."""
    from tunelab.data import conll, tagging

    model, tok, labels = run.model, run.tokenizer, run.labels
    sent = conll.read_lines([_json_line(item)], "input")[0]
    enc = tok(
        [sent.tokens],
        is_split_into_words=True,
        truncation=True,
        max_length=run.cfg.model.max_length,
        return_tensors="pt",
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    word_ids = enc.word_ids(0)
    first = {w: i for i, w in reversed(list(enumerate(word_ids))) if w is not None}  # word -> first sub-word position
    with torch.no_grad():
        probs = torch.softmax(_token_logits(model, ids, mask)[0], -1)  # (seq, labels)
    n_words = len(first)
    tags = tagging.repair([labels[int(probs[first[w]].argmax())] for w in range(n_words)])
    special = _special_mask(ids[0].tolist(), tok)
    roll = _rollout(model, {"input_ids": ids, "attention_mask": mask})
    entities = []
    for a, b, kind in tagging.spans(tags):
        pos = torch.tensor([first[w] for w in range(a, b)])
        tag_ids = torch.tensor([labels.index(t) for t in tags[a:b]])

        def forward(input_ids, attention_mask, pos=pos, tag_ids=tag_ids):
            p = torch.softmax(_token_logits(model, input_ids, attention_mask), -1)  # (batch, seq, labels)
            return p[:, pos, tag_ids].mean(dim=-1)

        ig = attr.integrated_gradients(
            forward,
            _embeddings(model),
            ids,
            attr.baseline_ids(ids, special, tok.pad_token_id),
            (mask,),
            steps=opts.steps,
            tolerance=opts.tolerance,
        )
        words = _word_scores(word_ids, ig.scores, roll[pos].mean(dim=0).tolist(), sent)
        entities.append(
            {
                "type": kind,
                "start": sent.offsets[a][0],
                "end": sent.offsets[b - 1][1],
                "text": sent.text[sent.offsets[a][0] : sent.offsets[b - 1][1]],
                "words_span": [a, b],
                "prob": float(probs[pos, tag_ids].mean()),
                "words": words,
                "completeness": ig.completeness(opts.tolerance),
            }
        )
    truncated = n_words < len(sent.tokens)
    return {
        "kind": "token_classification",
        "text": sent.text,
        "tokens": sent.tokens,
        "tags": tags + ["O"] * (len(sent.tokens) - n_words),
        "entities": entities,
        **({"note": f"only the first {n_words} words fit model.max_length"} if truncated else {}),
    }


def _json_line(item: dict) -> str:
    import json

    return json.dumps({"tokens": item["tokens"]} if "tokens" in item else {"text": item["text"]})


def _token_logits(model, input_ids, attention_mask):
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    return logits[:, logits.shape[1] - input_ids.shape[1] :]  # (batch, seq, labels); prompt methods prepend positions


def _word_scores(word_ids: list, ig: list[float], roll: list[float], sent) -> list[dict]:
    sums: dict[int, list[float]] = {}
    for w, g, r in zip(word_ids, ig, roll):
        if w is not None:
            s = sums.setdefault(w, [0.0, 0.0])
            s[0] += g
            s[1] += r
    return [
        {"word": sent.tokens[w], "start": sent.offsets[w][0], "end": sent.offsets[w][1], "ig": g, "rollout": r}
        for w, (g, r) in sorted(sums.items())
    ]


# ---------------------------------------------------------------- causal LM


def causal_lm(run, item: dict, opts: Options) -> dict:
    """item: {"text"}: a user message (chat template) or, with opts.raw, raw text; explains each generated token."""
    from tunelab.generation.decode import encode_prompt, eos_ids

    model, tok = run.model, run.tokenizer
    template = run.task.prompt_template(run)  # the chat template the run's prompts are rendered with
    prompt = item["text"] if opts.raw else [{"role": "user", "content": item["text"]}]
    ids, _ = encode_prompt(tok, prompt, budget=run.cfg.model.max_length, template=template, log=lambda m: None)
    stops = set(eos_ids(model, tok))
    seq, steps = list(ids), []
    for _ in range(opts.max_new_tokens):
        x = torch.tensor([seq])
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=x).logits[0, -1].float(), -1)
        nxt = int(probs.argmax())  # greedy: the explanation is of a reproducible output
        if nxt in stops:
            break

        def forward(input_ids, nxt=nxt):
            return torch.softmax(model(input_ids=input_ids).logits[:, -1].float(), -1)[:, nxt]

        ig = attr.integrated_gradients(
            forward,
            _embeddings(model),
            x,
            attr.baseline_ids(x, _special_mask(seq, tok), tok.pad_token_id),
            (),
            steps=opts.steps,
            tolerance=opts.tolerance,
            internal_batch_size=16,
        )
        roll = _rollout(model, {"input_ids": x})[-1]  # last position: the one predicting the new token
        steps.append(
            {
                "token": tok.decode([nxt]),
                "prob": float(probs[nxt]),
                "completeness": ig.completeness(opts.tolerance),
                "words": [
                    {"word": tok.decode([t]), "ig": g, "rollout": float(r), "generated": i >= len(ids)}
                    for i, (t, g, r) in enumerate(zip(seq, ig.scores, roll.tolist()))
                ],
            }
        )
        seq.append(nxt)
    return {
        "kind": "causal_lm",
        "text": item["text"],
        "prompt_tokens": len(ids),
        "output": tok.decode(seq[len(ids) :]),
        "tokens": steps,
    }


EXPLAINERS = {
    "classification": classification,
    "token_classification": token_classification,
    "causal_lm": causal_lm,
}


# ---------------------------------------------------------------- inputs


def classification_items(run, path: str) -> list[dict]:
    rows = run.task.read(run.cfg, path, with_labels=False).rows
    return [{"text": r.text, **({"text_pair": r.text_pair} if r.text_pair is not None else {})} for r in rows]


def token_classification_items(run, path: str) -> list[dict]:
    return [{"tokens": s.tokens} for s in run.task.read(run.cfg, path, with_labels=False).rows]


def causal_lm_items(run, path: str) -> list[dict]:
    """One prompt per line: plain text, or JSON with "text" or "prompt"."""
    import json
    from pathlib import Path

    from tunelab.errors import DataError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    items = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            text = obj.get("text", obj.get("prompt")) if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise DataError(f'{path}:{n}: expected {{"text": PROMPT}} or {{"prompt": PROMPT}}')
            items.append({"text": text})
        else:
            items.append({"text": line})
    return items


ITEMS = {
    "classification": classification_items,
    "token_classification": token_classification_items,
    "causal_lm": causal_lm_items,
}
