"""Explanations as coloured terminal text and as a self-contained HTML heatmap page.

Colour: green = the word raised the explained output (IG > 0), red = lowered it; the strength is the
word's |score| relative to the largest |score| in the same explanation. Rollout is non-negative (blue).
"""

from __future__ import annotations

import html

RESET = "\x1b[0m"


def _rgb(score: float, scale: float, blue: bool = False) -> tuple[int, int, int]:
    """Background colour: white at 0, full green/red (or blue) at |score| = scale."""
    t = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
    if blue:
        full = (90, 140, 255)
    else:
        full = (60, 190, 90) if score >= 0 else (235, 80, 80)
    return tuple(round(255 + (c - 255) * t) for c in full)  # type: ignore[return-value]


def _scale(words: list[dict], key: str) -> float:
    return max((abs(w[key]) for w in words), default=0.0)


def terminal_words(words: list[dict], key: str = "ig", colour: bool = True) -> str:
    """Words with a 24-bit ANSI background per score; without colour, each word is followed by [+0.12]."""
    scale = _scale(words, key)
    parts = []
    for w in words:
        if colour:
            r, g, b = _rgb(w[key], scale, blue=key == "rollout")
            parts.append(f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;0;0;0m{w['word']}{RESET}")
        else:
            parts.append(f"{w['word']}[{w[key]:+.3f}]")
    return " ".join(parts)


def terminal(expl: dict, colour: bool = True) -> str:
    """A few lines per explanation: the prediction, the coloured words, top words, completeness."""
    return TERMINAL[expl["kind"]](expl, colour)


def _terminal_label(expl: dict, colour: bool) -> str:
    head = f"{expl['label']} ({expl['prob']:.3f}); explaining {expl['target']}"
    return _terminal_block(head, expl["words"], expl["completeness"], colour)


def _terminal_entities(expl: dict, colour: bool) -> str:
    if not expl["entities"]:
        return f"{expl['text']}\n  no entities predicted"
    return "\n".join(
        _terminal_block(f"{e['type']} '{e['text']}' ({e['prob']:.3f})", e["words"], e["completeness"], colour)
        for e in expl["entities"]
    )


def _terminal_tokens(expl: dict, colour: bool) -> str:
    lines = [f"prompt: {expl['text']}", f"output: {expl['output']}"]
    for t in expl["tokens"]:
        top = sorted(t["words"], key=lambda w: -w["ig"])[:5]
        lines.append(
            f"  {t['token']!r} ({t['prob']:.3f}) <- "
            + ", ".join(f"{w['word']!r} {w['ig']:+.3f}" for w in top)
            + f"  [completeness error {t['completeness']['relative_error']:.1%}]"
        )
    return "\n".join(lines)


def _terminal_block(head: str, words: list[dict], comp: dict, colour: bool) -> str:
    top = sorted(words, key=lambda w: -w["ig"])[:3]
    return "\n".join(
        [
            head,
            "  IG:      " + terminal_words(words, "ig", colour),
            "  rollout: " + terminal_words(words, "rollout", colour),
            "  top: "
            + ", ".join(f"{w['word']} {w['ig']:+.3f}" for w in top)
            + f"  [IG sum {comp['sum']:+.4f} vs f(x)-f(baseline) {comp['f_input'] - comp['f_baseline']:+.4f}; "
            f"error {comp['relative_error']:.1%} at {comp['steps']} steps{'' if comp.get('ok', True) else ', ABOVE TOLERANCE'}]",
        ]
    )


# ---------------------------------------------------------------- HTML


def html_words(words: list[dict], key: str = "ig") -> str:
    scale = _scale(words, key)
    spans = []
    for w in words:
        r, g, b = _rgb(w[key], scale, blue=key == "rollout")
        spans.append(
            f"<span class='w' style='background:rgb({r},{g},{b})' title='{key} {w[key]:+.4f}'>{html.escape(w['word'])}</span>"
        )
    return " ".join(spans)


def html_block(expl: dict) -> str:
    """One explanation as HTML (no <html> wrapper): heading, IG and rollout heatmaps, completeness."""
    return HTML[expl["kind"]](expl)


def _html_label(expl: dict) -> str:
    return _html_entry(
        f"{expl['label']} ({expl['prob']:.3f}), explaining {expl['target']}", expl["words"], expl["completeness"]
    )


def _html_entities(expl: dict) -> str:
    if not expl["entities"]:
        return f"<div class='expl'><p>{html.escape(expl['text'])}</p><p><i>no entities predicted</i></p></div>"
    return "".join(
        _html_entry(f"{e['type']} “{e['text']}” ({e['prob']:.3f})", e["words"], e["completeness"])
        for e in expl["entities"]
    )


def _html_tokens(expl: dict) -> str:
    rows = []
    for t in expl["tokens"]:
        rows.append(
            f"<tr><th>{html.escape(t['token'])}<br><small>{t['prob']:.3f}</small></th>"
            f"<td class='heat'>{html_words(t['words'], 'ig')}</td>"
            f"<td>{t['completeness']['relative_error']:.1%}</td></tr>"
        )
    return (
        f"<div class='expl'><p><b>prompt</b> {html.escape(expl['text'])}<br><b>output</b> {html.escape(expl['output'])}</p>"
        "<table><tr><th>generated token</th><th>integrated gradients over the context</th><th>completeness error</th></tr>"
        + "".join(rows)
        + "</table></div>"
    )


def _html_entry(head: str, words: list[dict], comp: dict) -> str:
    return (
        f"<div class='expl'><p><b>{html.escape(head)}</b></p>"
        f"<p class='heat'>IG: {html_words(words, 'ig')}</p><p class='heat'>rollout: {html_words(words, 'rollout')}</p>"
        f"<p class='small'>IG sum {comp['sum']:+.4f}; f(x) − f(baseline) {comp['f_input'] - comp['f_baseline']:+.4f}; "
        f"completeness error {comp['relative_error']:.2%} at {comp['steps']} steps</p></div>"
    )


# an explanation record's "kind" (its shape: one label, entities, generated tokens) -> how it is drawn
TERMINAL = {
    "classification": _terminal_label,
    "token_classification": _terminal_entities,
    "causal_lm": _terminal_tokens,
}
HTML = {"classification": _html_label, "token_classification": _html_entities, "causal_lm": _html_tokens}

CSS = (
    ".w{padding:1px 3px;border-radius:3px;margin:1px;display:inline-block}.expl{border-bottom:1px solid #ddd;padding:6px 0}"
    ".small{color:#555;font-size:90%}"
)


def html_page(explanations: list[dict], title: str) -> str:
    """A standalone page of explanations (no scripts, no network)."""
    body = "".join(html_block(e) for e in explanations)
    legend = (
        "<p class='small'>Green: the word raised the explained probability; red: lowered it (integrated gradients). "
        "Blue: attention rollout share.</p>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{legend}{body}</body></html>"
    )
