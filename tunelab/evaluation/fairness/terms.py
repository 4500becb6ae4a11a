"""Identity-term lists for counterfactual probes: category -> group -> terms.

Within a category the groups' lists are aligned: the i-th term of one group is replaced by the i-th term of
another (``he`` <-> ``she``, ``church`` <-> ``mosque``). Names are those of the Equity Evaluation Corpus
(Kiritchenko & Mohammad, 2018), which took them from studies of name-based discrimination.
A user's own lists (YAML or JSON of the same shape) extend or replace categories.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.errors import DataError

BUILTIN: dict[str, dict[str, list[str]]] = {
    "gender": {
        "male": [
            "he",
            "his",
            "him",
            "himself",
            "man",
            "men",
            "boy",
            "boys",
            "father",
            "fathers",
            "son",
            "sons",
            "brother",
            "brothers",
            "husband",
            "husbands",
            "uncle",
            "nephew",
            "king",
            "prince",
            "gentleman",
            "gentlemen",
            "mr",
            "sir",
            "dad",
            "grandfather",
            "boyfriend",
            "male",
            "males",
            "actor",
            "actors",
        ],
        "female": [
            "she",
            "her",
            "her",
            "herself",
            "woman",
            "women",
            "girl",
            "girls",
            "mother",
            "mothers",
            "daughter",
            "daughters",
            "sister",
            "sisters",
            "wife",
            "wives",
            "aunt",
            "niece",
            "queen",
            "princess",
            "lady",
            "ladies",
            "mrs",
            "madam",
            "mom",
            "grandmother",
            "girlfriend",
            "female",
            "females",
            "actress",
            "actresses",
        ],
    },
    "race": {
        "black": ["black", "blacks", "african-american", "african-americans", "african"],
        "white": ["white", "whites", "european-american", "european-americans", "european"],
        "asian": ["asian", "asians", "asian-american", "asian-americans", "asian"],
        "hispanic": ["hispanic", "hispanics", "hispanic-american", "hispanic-americans", "latino"],
    },
    "religion": {
        "christian": ["christian", "christians", "church", "bible", "christianity"],
        "muslim": ["muslim", "muslims", "mosque", "quran", "islam"],
        "jewish": ["jewish", "jews", "synagogue", "torah", "judaism"],
        "hindu": ["hindu", "hindus", "temple", "vedas", "hinduism"],
        "buddhist": ["buddhist", "buddhists", "monastery", "sutras", "buddhism"],
    },
    "nationality": {
        "american": ["american", "america", "americans"],
        "mexican": ["mexican", "mexico", "mexicans"],
        "chinese": ["chinese", "china", "chinese"],
        "indian": ["indian", "india", "indians"],
        "german": ["german", "germany", "germans"],
        "nigerian": ["nigerian", "nigeria", "nigerians"],
        "british": ["british", "britain", "britons"],
        "iranian": ["iranian", "iran", "iranians"],
        "japanese": ["japanese", "japan", "japanese"],
        "brazilian": ["brazilian", "brazil", "brazilians"],
    },
    "names": {
        "european_male": ["Adam", "Alan", "Andrew", "Frank", "Harry", "Jack", "Josh", "Justin", "Roger", "Ryan"],
        "european_female": [
            "Amanda",
            "Betsy",
            "Courtney",
            "Ellen",
            "Heather",
            "Katie",
            "Kristin",
            "Melanie",
            "Nancy",
            "Stephanie",
        ],
        "african_american_male": [
            "Alonzo",
            "Alphonse",
            "Darnell",
            "Jamel",
            "Jerome",
            "Lamar",
            "Leroy",
            "Malik",
            "Terrence",
            "Torrance",
        ],
        "african_american_female": [
            "Ebony",
            "Jasmine",
            "Lakisha",
            "Latisha",
            "Latoya",
            "Nichelle",
            "Shaniqua",
            "Shereen",
            "Tanisha",
            "Tia",
        ],
    },
}


def load(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """Read user term lists: {category: {group: [terms]}} with equally long lists in each category."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML/JSON ({getattr(exc, 'problem', exc)})") from None
    return validate(data, str(path))


def validate(data, source: str) -> dict[str, dict[str, list[str]]]:
    if not isinstance(data, dict) or not data:
        raise DataError(f"{source}: expected a mapping {{category: {{group: [terms, ...]}}}}")
    for cat, groups in data.items():
        if not isinstance(groups, dict) or len(groups) < 2:
            raise DataError(f"{source}: category '{cat}' needs at least two groups, each a list of terms")
        lengths = {}
        for group, words in groups.items():
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise DataError(f"{source}: {cat}.{group} must be a non-empty list of terms")
            lengths[group] = len(words)
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{g} has {n}" for g, n in lengths.items())
            raise DataError(f"{source}: the groups of '{cat}' must list aligned terms of equal length ({shown})")
    return {str(c): {str(g): [w.strip() for w in ws] for g, ws in gs.items()} for c, gs in data.items()}


def select(user: dict | None, categories: list[str] | None, replace: bool = False) -> dict[str, dict[str, list[str]]]:
    """Built-in lists (unless ``replace``) updated with the user's, restricted to ``categories`` when given."""
    lists = {} if replace else {c: dict(g) for c, g in BUILTIN.items()}
    lists.update(user or {})
    if categories:
        unknown = [c for c in categories if c not in lists]
        if unknown:
            raise DataError(f"unknown term category '{unknown[0]}'; available: {', '.join(lists)}")
        lists = {c: lists[c] for c in categories}
    return lists
