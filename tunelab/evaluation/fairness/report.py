"""fairness.json as report sections (markdown rows and HTML)."""

from __future__ import annotations


def _rows(fair: dict) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) per table, shared by markdown and HTML."""
    out = []
    cf = fair.get("counterfactual")
    if cf and not cf["variants"]:
        out.append(
            (
                f"Counterfactual identity-term swaps: none of the {cf['texts']} texts ({cf['source']}) holds an identity term "
                "of the probed categories",
                [],
                [],
            )
        )
    elif cf:
        rows = [
            [cat, c["texts"], c["variants"], c["flip_rate"], c["mean_abs_shift"]] for cat, c in cf["categories"].items()
        ]
        rows.append(["all", "", cf["variants"], cf["flip_rate"], ""])
        out.append(
            (
                f"Counterfactual identity-term swaps on {cf['texts']} texts ({cf['source']})",
                ["category", "texts", "variants", "flip rate", "mean |shift|"],
                rows,
            )
        )
        rows = [
            [cat, g, v["variants"], v["flip_rate"], v["mean_shift"]]
            for cat, c in cf["categories"].items()
            for g, v in c["groups"].items()
        ]
        out.append(
            (
                f"Per target group (shift of P({cf['reference']}))",
                ["category", "swapped to", "variants", "flip rate", "mean shift"],
                rows,
            )
        )
    eec = fair.get("eec")
    if eec:
        rows = []
        for attr in ("gender", "race"):
            for emo, t in eec[attr].items():
                if emo != "gap":
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
                            "yes" if t["significant"] else "no",
                        ]
                    )
        out.append(
            (
                f"Equity Evaluation Corpus: gaps in P({eec['positive']})",
                [
                    "attribute",
                    "gap",
                    "emotion",
                    "pairs",
                    "mean gap",
                    "share a > b",
                    "t-test p",
                    "Wilcoxon p",
                    "p < 0.05",
                ],
                rows,
            )
        )
    grp = fair.get("groups")
    if grp:
        rows = [
            [g, v["examples"], v["accuracy"], v["macro_f1"], v["per_class"][grp["class"]]["selection_rate"]]
            for g, v in grp["groups"].items()
        ]
        out.append(
            (
                f"Groups ({grp['column']}); demographic-parity difference {grp['demographic_parity_difference']:.4f}, "
                f"equalised-odds difference {grp['equalized_odds_difference']:.4f} (class {grp['class']})",
                ["group", "examples", "accuracy", "macro F1", f"selection rate ({grp['class']})"],
                rows,
            )
        )
    crows = fair.get("crows_pairs")
    if crows:
        rows = [
            [k, v["pairs"], v["stereotype_rate"], v["p_value"], v["stereotype_rate_full_sentence"]]
            for k, v in [("all", crows["overall"]), *crows["bias_types"].items()]
        ]
        out.append(
            (
                "CrowS-Pairs: share of pairs where the more stereotyping sentence is more likely (50% = no preference)",
                ["bias type", "pairs", "stereotype rate", "binomial p", "full-sentence rate"],
                rows,
            )
        )
    return out


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
