"""`tunelab recommend prepare | eval`: interaction logs -> text datasets, and leave-last-out ranking metrics.

prepare writes into ``--out`` (new or empty); eval reads ``test.jsonl`` and scores it with a trained run
(``--run``), an untuned encoder (``--embeddings MODEL``) or item popularity (``--popularity``), printing JSON and
optionally writing it to a new file (``--json``).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.errors import TunelabError


def add_parser(sub) -> None:
    p = sub.add_parser("recommend", help="recommendation from interaction logs: prepare text datasets, rank, HR/NDCG")
    rsub = p.add_subparsers(dest="recommend_command", required=True)
    pp = rsub.add_parser("prepare", help="leave-last-out text datasets from an interaction log and an item file")
    pp.add_argument("log", help="interactions: RecBole .inter, or CSV/TSV with a header (user, item, time columns)")
    pp.add_argument("items", help="items: RecBole .item, or CSV/TSV with a header (item id and text columns)")
    pp.add_argument("--out", required=True, help="new or empty folder for the datasets")
    pp.add_argument("--user-column", default="user_id")
    pp.add_argument("--item-column", default="item_id")
    pp.add_argument("--time-column", default="timestamp")
    pp.add_argument(
        "--item-text", default="movie_title,release_year,class", help="item columns joined into the item's text"
    )
    pp.add_argument("--history", type=int, default=10, help="most recent items in a user's history text [10]")
    pp.add_argument("--targets-per-user", type=int, default=5, help="training targets per user (latest first) [5]")
    pp.add_argument("--negatives", type=int, default=1, help="sampled unseen items per positive pair [1]")
    pp.add_argument("--candidates", type=int, default=99, help="sampled unseen items ranked with each test item [99]")
    pp.add_argument("--users", type=int, default=None, help="a random sample of this many users (default: all)")
    pp.add_argument(
        "--test-users", type=int, default=None, help="rank the test items of a random sample of users (default: all)"
    )
    pp.add_argument("--seed", type=int, default=0)
    ev = rsub.add_parser("eval", help="HR@K and NDCG@K of a run, untuned embeddings or popularity on test.jsonl")
    ev.add_argument("candidates", help="test.jsonl written by `tunelab recommend prepare`")
    how = ev.add_mutually_exclusive_group(required=True)
    how.add_argument("--run", help="a trained run folder (retrieval, or a pair classifier with --score probs.1)")
    how.add_argument("--embeddings", metavar="MODEL", help="an untuned encoder (alias, hub id or folder): cosine")
    how.add_argument("--popularity", metavar="FILE", help="popularity.json from prepare: most-watched first")
    ev.add_argument("--score", default="score", help="the number in the run's predictions to rank by [score]")
    ev.add_argument("--k", type=int, default=10, help="cut-off of HR@K and NDCG@K [10]")
    ev.add_argument("--max-length", type=int, default=256, help="token cap for --embeddings [256]")
    ev.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ev.add_argument("--json", dest="out_json", help="also write the result to this new JSON file")


def run(args, log) -> int:
    return {"prepare": prepare, "eval": evaluate}[args.recommend_command](args, log)


def prepare(args, log) -> int:
    from tunelab.data.commands import prepare_out
    from tunelab.recommend import interactions

    opts = interactions.Options(
        user_column=args.user_column,
        item_column=args.item_column,
        time_column=args.time_column,
        item_text=tuple(c.strip() for c in args.item_text.split(",") if c.strip()),
        history=args.history,
        targets_per_user=args.targets_per_user,
        negatives=args.negatives,
        candidates=args.candidates,
        users=args.users,
        test_users=args.test_users,
        seed=args.seed,
    )
    for name in ("history", "targets_per_user", "candidates"):
        if getattr(opts, name) < 1:
            raise TunelabError(f"--{name.replace('_', '-')}: expected a positive number, got {getattr(opts, name)}")
    if opts.negatives < 0:
        raise TunelabError(f"--negatives: expected 0 or more, got {opts.negatives}")
    for name in ("users", "test_users"):
        if getattr(opts, name) is not None and getattr(opts, name) < 1:
            raise TunelabError(f"--{name.replace('_', '-')}: expected a positive number, got {getattr(opts, name)}")
    datasets, summary = interactions.build(args.log, args.items, opts)  # read and checked before --out is made
    out = prepare_out(args.out, [args.log, args.items])
    for path in interactions.write(out, datasets):
        log(f"wrote {path}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0


def evaluate(args, log) -> int:
    from tunelab import hardware
    from tunelab.recommend import ranking

    if args.k < 1:
        raise TunelabError(f"--k: expected a positive cut-off, got {args.k}")
    if args.out_json and Path(args.out_json).exists():
        raise TunelabError(f"--json {args.out_json}: already exists; refusing to overwrite it")
    users = ranking.read_candidates(args.candidates)
    hardware.use_threads(args.threads)
    if args.popularity:
        scorer, what = ranking.popularity_scorer(args.popularity, users), "popularity"
    elif args.embeddings:
        scorer, what = ranking.embedding_scorer(args.embeddings, args.max_length), f"untuned {args.embeddings}"
    else:
        scorer, what = ranking.run_scorer(args.run, args.score), args.run
    log(f"ranking {len(users)} users' candidates with {what}")
    result = {"scorer": what, **ranking.evaluate(users, scorer, args.k)}
    print(json.dumps(result, indent=2))
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0
