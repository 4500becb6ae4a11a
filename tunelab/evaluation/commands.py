"""The `fairness`, `explain` and `calibrate` subcommands: parsers and functions (cli.py only dispatches)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tunelab.errors import TunelabError


def fairness(args, log) -> int:
    from tunelab.recipes import fairness as recipe

    cats = [c.strip() for c in args.categories.split(",") if c.strip()] if args.categories else None
    req = recipe.Request(
        data=args.data,
        group_column=args.group_column,
        terms=args.terms,
        only_user_terms=args.only_user_terms,
        categories=cats,
        eec=args.eec,
        crows_pairs=args.crows_pairs,
        positive=args.positive,
        max_rows=args.max_rows,
        out=args.out,
    )
    result = recipe.run(args.run_dir, req, log)
    print(json.dumps(_headline(result), indent=2))
    return 0


def _headline(result: dict) -> dict:
    """The figures worth a glance; fairness.json has everything."""
    out = {}
    if "counterfactual" in result:
        cf = result["counterfactual"]
        out["counterfactual_flip_rate"] = cf["flip_rate"]
        out["counterfactual_by_category"] = {
            k: {"variants": v["variants"], "flip_rate": v["flip_rate"], "mean_abs_shift": v["mean_abs_shift"]}
            for k, v in cf["categories"].items()
        }
    if "eec" in result:
        out["eec"] = {
            a: {
                "gap": result["eec"][a]["gap"],
                "mean_gap": result["eec"][a]["overall"]["gap"],
                "t_p": result["eec"][a]["overall"]["t_p"],
            }
            for a in ("gender", "race")
        }
    if "groups" in result:
        g = result["groups"]
        out["groups"] = {
            "demographic_parity_difference": g["demographic_parity_difference"],
            "equalized_odds_difference": g["equalized_odds_difference"],
            "accuracy_difference": g["accuracy_difference"],
        }
    if "crows_pairs" in result:
        out["crows_pairs"] = {
            k: v["stereotype_rate"]
            for k, v in [("all", result["crows_pairs"]["overall"]), *result["crows_pairs"]["bias_types"].items()]
        }
    return out


def explain(args, log) -> int:
    from tunelab.evaluation.explain.targets import Options
    from tunelab.recipes import explain as recipe

    if args.steps < 2 or not 0 < args.tolerance < 1:
        raise TunelabError("--steps must be at least 2 and --tolerance between 0 and 1")
    colour = {"always": True, "never": False, "auto": sys.stdout.isatty()}[args.color]
    opts = Options(
        steps=args.steps, tolerance=args.tolerance, target=args.target, max_new_tokens=args.max_new_tokens, raw=args.raw
    )
    req = recipe.Request(args.text, args.data, args.text_pair, opts, args.max_rows, args.out, colour)
    out = recipe.run(args.run_dir, req, log=lambda m: print(m, flush=True))
    folder = Path(args.out) if args.out else Path(args.run_dir)
    log(f"{len(out)} explanation(s): {folder / recipe.HTML}, {folder / recipe.JSON}")
    return 0


def calibrate(args, log) -> int:
    from tunelab.recipes import calibrate as recipe

    result = recipe.run(args.run_dir, args.data, force=args.force, log=log)
    print(json.dumps(result, indent=2))
    return 0


def monitor(args, log) -> int:
    from tunelab.evaluation import monitor as rule

    return rule.run(args)


def add_parsers(sub) -> None:
    from tunelab.evaluation import monitor as rule

    rule.add_parser(sub)
    p = sub.add_parser(
        "fairness", help="fairness probes: counterfactual identity swaps, EEC gaps, group metrics, CrowS-Pairs"
    )
    p.add_argument("run_dir", help="run folder (or, with --crows-pairs and --out, a causal LM name/alias/path)")
    p.add_argument("--data", help="texts to probe (the run's data format; default: the run's dev split)")
    p.add_argument(
        "--group-column", help="column of --data naming each row's group: per-group metrics and parity differences"
    )
    p.add_argument(
        "--terms", help="YAML/JSON identity-term lists {category: {group: [aligned terms]}} added to the built-in ones"
    )
    p.add_argument("--only-user-terms", action="store_true", help="use only the --terms lists")
    p.add_argument(
        "--categories",
        help="comma-separated term categories to probe (default: all: gender, race, religion, nationality, names)",
    )
    p.add_argument(
        "--eec", help="Equity Evaluation Corpus CSV: sentiment gaps by gender and race with significance tests"
    )
    p.add_argument("--crows-pairs", help="CrowS-Pairs CSV (causal_lm runs): stereotype preference rate per bias type")
    p.add_argument(
        "--positive",
        help="the label whose probability is the sentiment score (default: 1/positive/pos of a binary task)",
    )
    p.add_argument("--max-rows", type=int, help="probe only the first N rows of --data / --crows-pairs")
    p.add_argument(
        "--out", help="folder for fairness.json (default: the run folder, whose report then shows the results)"
    )
    p = sub.add_parser(
        "explain", help="token attributions (integrated gradients, attention rollout) for a run's predictions"
    )
    p.add_argument("run_dir")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--text", action="append", help="text to explain (repeatable); causal_lm: a user message")
    group.add_argument(
        "--data", help='file of inputs (the run\'s data format; causal_lm: one prompt per line or JSONL with "text")'
    )
    p.add_argument("--text-pair", help="second text for sentence-pair classification runs")
    p.add_argument("--target", help="classification: explain this label instead of the predicted one")
    p.add_argument(
        "--steps", type=int, default=50, help="integration steps to start with (doubled until completeness holds)"
    )
    p.add_argument(
        "--tolerance", type=float, default=0.05, help="completeness tolerance relative to |f(x) - f(baseline)|"
    )
    p.add_argument("--max-rows", type=int, default=20, help="explain at most N inputs of --data")
    p.add_argument("--max-new-tokens", type=int, default=12, help="causal_lm: tokens to generate and explain")
    p.add_argument("--raw", action="store_true", help="causal_lm: --text is raw text to continue, not a chat message")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="coloured terminal output")
    p.add_argument("--out", help="folder for explanations.html/.json (default: the run folder)")
    p = sub.add_parser("calibrate", help="fit temperature scaling for a classification run (predict and serve use it)")
    p.add_argument("run_dir")
    p.add_argument("--data", help="labelled file to fit on (default: the run's dev split)")
    p.add_argument("--force", action="store_true", help="replace a temperature the run already has")
