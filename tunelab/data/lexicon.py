"""Synonyms for augmentation: WordNet's database files, or nearest neighbours in a model's word embeddings.

WordNet comes from Debian's ``wordnet-base`` package (``make wordnet`` installs it; files in /usr/share/wordnet),
read here directly: each line of ``data.noun|verb|adj|adv`` is one synset listing its words, and words in one
synset are synonyms. No network and no NLTK data download.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from tunelab.errors import TunelabError

DEFAULT_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/opt/homebrew/share/wordnet")
_POS = ("noun", "verb", "adj", "adv")
_MARKER = re.compile(r"\(\w+\)$")  # adjective markers such as good(a)


def wordnet_dir(given: str | None = None) -> Path:
    """The folder holding WordNet's data.* files: ``given``, $WORDNET_DIR, or a standard install location."""
    for cand in [given] if given else [os.environ.get("WORDNET_DIR"), *DEFAULT_DIRS]:
        if cand and (Path(cand) / "data.noun").is_file():
            return Path(cand)
    where = given or os.environ.get("WORDNET_DIR") or ", ".join(DEFAULT_DIRS)
    raise TunelabError(
        f"{where}: no WordNet data.noun found; install it with `apt-get install wordnet-base` (or `make wordnet`), "
        "point --wordnet-dir/$WORDNET_DIR at a folder with data.noun, data.verb, data.adj, data.adv, "
        "or use --synonyms embedding"
    )


def parse_synset(line: str) -> list[str]:
    """The words of one data.* line (lower-cased, underscores as spaces); [] for license/header lines."""
    if not line or line[0] == " ":
        return []
    parts = line.split()
    count = int(parts[3], 16)
    words = [_MARKER.sub("", parts[4 + 2 * k]).replace("_", " ").lower() for k in range(count)]
    return list(dict.fromkeys(words))


def read_wordnet(folder: str | Path) -> dict[str, list[str]]:
    """word -> sorted synonyms (words sharing a synset with it), over all parts of speech."""
    syn: dict[str, set[str]] = defaultdict(set)
    for pos in _POS:
        path = Path(folder) / f"data.{pos}"
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                words = parse_synset(line)
                for w in words:
                    syn[w].update(x for x in words if x != w)
    return {w: sorted(s) for w, s in syn.items() if s}


def embedding_neighbours(
    words: set[str], model_name: str = "minilm-l6", k: int = 5, min_sim: float = 0.5
) -> dict[str, list[str]]:
    """word -> up to ``k`` whole-word vocabulary entries closest in the model's input embeddings (cosine >= min_sim).

    Static embeddings put antonyms close too (good/bad), so callers should filter label-changing results.
    """
    import torch

    from tunelab.models import load as model_load

    src = model_load.resolve(model_name)
    tok = model_load.load_tokenizer(src)
    model, _ = model_load.load_model(src, "AutoModel")
    vocab = tok.get_vocab()
    whole = [w for w in vocab if w.isalpha() and len(w) > 2]
    ids = torch.tensor([vocab[w] for w in whole])
    emb = torch.nn.functional.normalize(model.get_input_embeddings().weight.detach()[ids], dim=-1)  # (words, hidden)
    row = {w: i for i, w in enumerate(whole)}
    asked = [w for w in words if w in row]
    out: dict[str, list[str]] = {}
    if not asked:
        return out
    sims = emb[[row[w] for w in asked]] @ emb.T  # (asked, words)
    top = sims.topk(k + 1, dim=-1)
    for w, vals, idx in zip(asked, top.values.tolist(), top.indices.tolist()):
        near = [whole[j] for v, j in zip(vals, idx) if whole[j] != w and v >= min_sim][:k]
        if near:
            out[w] = near
    return out
