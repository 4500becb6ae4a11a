"""Length of each example in the model's own tokens, counted the way training encodes it."""

from __future__ import annotations


def count(inputs, items) -> tuple[list[int], list[int | None] | None]:
    """(tokens per item with special tokens, prompt tokens per item for instruction data else None)."""
    from tunelab.models import load as model_load

    cfg = inputs.cfg
    src = model_load.resolve(cfg.model.name, cfg.model.gguf_file, cfg.model.revision)
    tokenizer = model_load.load_tokenizer(src)
    if inputs.kind == "text":
        rows = [it.row for it in items]
        pairs = [r.text_pair or "" for r in rows] if any(r.text_pair is not None for r in rows) else None
        enc = tokenizer([r.text for r in rows], pairs, truncation=False)
        return [len(ids) for ids in enc["input_ids"]], None
    if inputs.kind == "tokens":
        enc = tokenizer([it.row.tokens for it in items], is_split_into_words=True, truncation=False)
        return [len(ids) for ids in enc["input_ids"]], None
    return _lm_lengths(cfg, tokenizer, items)


def _lm_lengths(cfg, tokenizer, items) -> tuple[list[int], list[int | None]]:
    from tunelab.data import templates

    template = templates.chat_template(tokenizer, cfg.task.chat_template)
    total, prompt = [], []
    for it in items:
        ex = it.row
        if ex.messages is None:
            total.append(len(templates.tokenize_text(tokenizer, ex.text)[0]))
            prompt.append(None)
            continue
        total.append(len(templates.tokenize_conversation(tokenizer, ex.messages, template, cfg.task.train_on)[0]))
        last = max(k for k, m in enumerate(ex.messages) if m["role"] == "assistant")
        text = templates.render(tokenizer, ex.messages[:last], template, add_generation_prompt=True)
        prompt.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return total, prompt
