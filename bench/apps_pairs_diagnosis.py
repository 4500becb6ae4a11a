"""Why the MovieLens text-pair classifier (recipe 3a) did not learn: measured checks on the prepared pair files.

    flock /tmp/tunelab-cpu.lock .venv/bin/python bench/apps_pairs_diagnosis.py runs/apps/movielens/data

Reads pairs-{train,dev}.tsv of `tunelab recommend prepare` and reports, for the classifier's model (minilm-l6,
max_length 96): pair lengths in tokens and how many exceed max_length (truncation); label balance; how far the label
can be predicted from the candidate alone (TF-IDF logistic regression: item popularity; genres and decade only);
the untuned encoder's history-candidate cosine (the bi-encoder baseline's signal); and linear probes on the FROZEN
untuned pair features the classification head starts from ([CLS], BERT pooler, mean of tokens). Writes
bench/results/<cpu-kind>/apps-pairs-diagnosis.md and .json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, load_average, machine, results_dir  # noqa: E402


def read(path: Path) -> list[tuple[str, str, int]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    return [(h, i, int(y)) for h, i, y in rows]


def genres_decade(item: str) -> str:
    """'Title | 1995 | Drama Comedy' -> 'y199 Drama Comedy': no title words, so no item identity."""
    parts = item.split(" | ")
    if len(parts) != 3:
        return "unknown"
    return " ".join(["y" + parts[1][:3], *parts[2].replace("Children's", "Children").split()])


def candidate_only(train, dev) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    y, ydev = [r[2] for r in train], [r[2] for r in dev]
    out = {}
    tfidf = TfidfVectorizer(token_pattern=r"[^ |;]+").fit([r[1] for r in train])
    lr = LogisticRegression(max_iter=1000, C=3).fit(tfidf.transform([r[1] for r in train]), y)
    out["candidate_text_tfidf_lr_dev_accuracy"] = lr.score(tfidf.transform([r[1] for r in dev]), ydev)
    bag = CountVectorizer(token_pattern=r"\S+").fit([genres_decade(r[1]) for r in train])
    lr = LogisticRegression(max_iter=1000).fit(bag.transform([genres_decade(r[1]) for r in train]), y)
    out["candidate_genres_decade_lr_dev_accuracy"] = lr.score(bag.transform([genres_decade(r[1]) for r in dev]), ydev)
    return out


def frozen_features(model, tok, rows, max_length: int) -> dict:
    """Untuned features per pair: [CLS], pooler, token mean of the joint input; cosine of the separate embeddings."""
    import torch
    import torch.nn.functional as F

    feats: dict[str, list] = {"cls": [], "pooler": [], "mean": [], "cosine": []}

    def mean(out, mask):
        m = mask[..., None].float()  # (B, T, 1)
        return (out.last_hidden_state * m).sum(1) / m.sum(1)  # (B, d)

    with torch.no_grad():
        for s in range(0, len(rows), 64):
            b = rows[s : s + 64]
            e = tok([r[0] for r in b], [r[1] for r in b], truncation=True, max_length=max_length, padding=True)
            e = {k: torch.tensor(v) for k, v in e.items()}
            out = model(**e)
            feats["cls"].append(out.last_hidden_state[:, 0])
            feats["pooler"].append(out.pooler_output)
            feats["mean"].append(mean(out, e["attention_mask"]))
            sides = []
            for texts in ([r[0] for r in b], [r[1] for r in b]):
                e = tok(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
                sides.append(F.normalize(mean(model(**e), e["attention_mask"]), dim=-1))
            feats["cosine"].append((sides[0] * sides[1]).sum(-1))  # (B,)
    return {k: torch.cat(v).numpy() for k, v in feats.items()}


def probes(train, dev, max_length: int) -> dict:
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from tunelab.models import load as model_load

    src = model_load.resolve("minilm-l6")
    model, _ = model_load.load_model(src, "AutoModel")
    tok = model_load.load_tokenizer(src)
    model.eval()
    torch.manual_seed(0)
    ft, fd = frozen_features(model, tok, train, max_length), frozen_features(model, tok, dev, max_length)
    y, ydev = [r[2] for r in train], [r[2] for r in dev]
    out = {"untuned_cosine_dev_auc": roc_auc_score(ydev, fd["cosine"])}
    for key in ("cls", "pooler", "mean"):
        lr = LogisticRegression(max_iter=2000).fit(ft[key], y)
        out[f"probe_{key}_train_accuracy"] = lr.score(ft[key], y)
        out[f"probe_{key}_dev_accuracy"] = lr.score(fd[key], ydev)
    out["pooler_abs_mean"] = float(abs(ft["pooler"]).mean())
    out["pooler_per_dim_std"] = float(ft["pooler"].std(0).mean())
    out["cls_per_dim_std"] = float(ft["cls"].std(0).mean())
    return out


def lengths(rows, max_length: int) -> dict:
    from tunelab.models import load as model_load

    tok = model_load.load_tokenizer(model_load.resolve("minilm-l6"))
    enc = tok([r[0] for r in rows], [r[1] for r in rows], truncation=False)
    n = [len(x) for x in enc["input_ids"]]
    kept = tok([r[0] for r in rows], [r[1] for r in rows], truncation=True, max_length=max_length)
    item_kept = sum(  # the candidate's segment (type 1) survives truncation whole
        sum(t) == len(tok(r[1])["input_ids"]) - 1 for t, r in zip(kept["token_type_ids"], rows)
    )
    return {
        "pairs": len(n),
        "max_tokens": max(n),
        "over_max_length": sum(x > max_length for x in n),
        "candidate_kept_whole": item_kept,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="the folder `tunelab recommend prepare` wrote (pairs-train.tsv, pairs-dev.tsv)")
    p.add_argument("--max-length", type=int, default=96, help="the classifier's model.max_length [96]")
    p.add_argument("--probe-train", type=int, default=600, help="training pairs for the frozen probes [600]")
    p.add_argument("--probe-dev", type=int, default=300, help="dev pairs for the frozen probes [300]")
    args = p.parse_args()
    folder = Path(args.data)
    train, dev = read(folder / "pairs-train.tsv"), read(folder / "pairs-dev.tsv")
    load_before, start = load_average(), time.monotonic()
    figures = {
        "lengths_train": lengths(train, args.max_length),
        "label_share_positive_train": sum(r[2] for r in train) / len(train),
        **candidate_only(train, dev),
        **probes(train[: args.probe_train], dev[: args.probe_dev], args.max_length),
    }
    figures["seconds"] = round(time.monotonic() - start, 1)
    command = f"bench/apps_pairs_diagnosis.py {args.data}"
    md = [
        "# Recipe movielens (3a): why the text-pair classifier did not learn",
        "",
        *header(machine(threads=2), load_before, load_average(), command),
        f"Training pairs {len(train)}, dev pairs {len(dev)}; frozen probes on the first {args.probe_train} / "
        f"{args.probe_dev}.",
        "",
        "| check | value |",
        "|---|---|",
        *[f"| {k} | {json.dumps(v) if isinstance(v, dict) else round(v, 4)} |" for k, v in figures.items()],
        "",
    ]
    out = results_dir()
    (out / "apps-pairs-diagnosis.md").write_text("\n".join(md), encoding="utf-8")
    (out / "apps-pairs-diagnosis.json").write_text(json.dumps({"command": command, **figures}, indent=2))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
