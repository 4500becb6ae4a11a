"""fairness.json as report sections (markdown rows and HTML)."""

from __future__ import annotations

Table = tuple[str, list[str], list[list]]


def _rows(fair: dict) -> list[Table]:
    """(title, header, rows) per table, shared by markdown and HTML, for the probes that ran."""
    out: list[Table] = []
    if fair.get("counterfactual"):
        out += _counterfactual(fair["counterfactual"])
    if fair.get("eec"):
        out.append(_eec(fair["eec"]))
    if fair.get("groups"):
        out.append(_groups(fair["groups"]))
    if fair.get("crows_pairs"):
        out.append(_crows_pairs(fair["crows_pairs"]))
    return out


def _counterfactual(cf: dict) -> list[Table]:
    if not cf["variants"]:
        title = (
            f"Counterfactual identity-term swaps: none of the {cf['texts']} texts ({cf['source']}) holds an identity "
            "term of the probed categories"
        )
        return [(title, [], [])]
    cats = cf["categories"]
    rows = [[cat, c["texts"], c["variants"], c["flip_rate"], c["mean_abs_shift"]] for cat, c in cats.items()]
    rows.append(["all", "", cf["variants"], cf["flip_rate"], ""])
    per_group = [
        [cat, g, v["variants"], v["flip_rate"], v["mean_shift"]]
        for cat, c in cats.items()
        for g, v in c["groups"].items()
    ]
    return [
        (
            f"Counterfactual identity-term swaps on {cf['texts']} texts ({cf['source']})",
            ["category", "texts", "variants", "flip rate", "mean |shift|"],
            rows,
        ),
        (
            f"Per target group (shift of P({cf['reference']}))",
            ["category", "swapped to", "variants", "flip rate", "mean shift"],
            per_group,
        ),
    ]


def _eec(eec: dict) -> Table:
    rows = []
    for attr in ("gender", "race"):
        for emo, t in eec[attr].items():
            if emo == "gap":
                continue
            significant = "yes" if t["significant"] else "no"
            rows.append(
                [
                    attr,
                    eec[attr]["gap"],
                    emo,
                    t["pairs"],
                    t["gap"],
                    t["a_higher"],
                    t["t_p"],
                    t["wilcoxon_p"],
                    significant,
                ]
            )
    header = ["attribute", "gap", "emotion", "pairs", "mean gap", "share a > b", "t-test p", "Wilcoxon p", "p < 0.05"]
    return f"Equity Evaluation Corpus: gaps in P({eec['positive']})", header, rows


def _groups(grp: dict) -> Table:
    cls = grp["class"]
    rows = [
        [g, v["examples"], v["accuracy"], v["macro_f1"], v["per_class"][cls]["selection_rate"]]
        for g, v in grp["groups"].items()
    ]
    title = (
        f"Groups ({grp['column']}); demographic-parity difference {grp['demographic_parity_difference']:.4f}, "
        f"equalised-odds difference {grp['equalized_odds_difference']:.4f} (class {cls})"
    )
    return title, ["group", "examples", "accuracy", "macro F1", f"selection rate ({cls})"], rows


def _crows_pairs(crows: dict) -> Table:
    rows = [
        [k, v["pairs"], v["stereotype_rate"], v["p_value"], v["stereotype_rate_full_sentence"]]
        for k, v in [("all", crows["overall"]), *crows["bias_types"].items()]
    ]
    return (
        "CrowS-Pairs: share of pairs where the more stereotyping sentence is more likely (50% = no preference)",
        ["bias type", "pairs", "stereotype rate", "binomial p", "full-sentence rate"],
        rows,
    )


def markdown(fair: dict) -> list[str]:
    from tunelab.evaluation.report import markdown_table

    out = []
    for title, header, rows in _rows(fair):
        out += [f"{title}:", "", markdown_table(header, rows), ""] if rows else [f"{title}.", ""]
    return out


def html(fair: dict) -> str:
    from tunelab.evaluation.html_report import esc, table

    return "".join(
        f"<h3>{esc(title)}</h3>" + (table(header, rows, (0, 1)) if rows else "") for title, header, rows in _rows(fair)
    )
