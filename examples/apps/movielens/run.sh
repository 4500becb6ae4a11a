#!/usr/bin/env bash
# Recipe 3, end to end: MovieLens-100k interactions -> leave-last-out text datasets; popularity and untuned-embedding
# baselines; (a) a text-pair relevance classifier and (b) a contrastive bi-encoder, each ranked by HR@10 / NDCG@10.
#   examples/apps/movielens/run.sh [OUT_DIR]        (default runs/apps/movielens)
# Environment: PREPARE_ARGS (options of `tunelab recommend prepare`), PAIRS_ARGS / BIENCODER_ARGS (key=value
# overrides), BASE_MODEL (the untuned encoder, default minilm-l6), TUNELAB (the command).
set -euo pipefail
cd "$(dirname "$0")/../../.."
APP=examples/apps/movielens
OUT=${1:-runs/apps/movielens}
TUNELAB=${TUNELAB:-tunelab}
ML=../shared/data/movielens-100k
mkdir -p "$OUT"

# 1. datasets (kept if already there: prepare never writes into a non-empty folder)
if [ ! -f "$OUT/data/summary.json" ]; then
    # shellcheck disable=SC2086
    "$TUNELAB" recommend prepare "$ML/ml-100k.inter" "$ML/ml-100k.item" --out "$OUT/data" ${PREPARE_ARGS:---history 5 --test-users 200}
fi
TEST="$OUT/data/test.jsonl"
rm -f "$OUT"/hr-*.json  # this recipe's own results of an earlier run

# 2. baselines: most popular first; cosine of the untuned encoder's embeddings
"$TUNELAB" recommend eval "$TEST" --popularity "$OUT/data/popularity.json" --json "$OUT/hr-popularity.json"
"$TUNELAB" recommend eval "$TEST" --embeddings "${BASE_MODEL:-minilm-l6}" --max-length 96 --json "$OUT/hr-untuned.json"

# 3a. text-pair relevance classifier, ranked by its probability of class 1
# shellcheck disable=SC2086
"$TUNELAB" train "$APP/pairs.yaml" output_dir="$OUT/pairs" data.train="$OUT/data/pairs-train.tsv" \
    data.dev="$OUT/data/pairs-dev.tsv" ${PAIRS_ARGS:-} --quiet
"$TUNELAB" recommend eval "$TEST" --run "$OUT/pairs" --score probs.1 --json "$OUT/hr-pairs.json"

# 3b. bi-encoder, ranked by cosine
# shellcheck disable=SC2086
"$TUNELAB" train "$APP/biencoder.yaml" output_dir="$OUT/biencoder" data.train="$OUT/data/retrieval-train.tsv" \
    data.dev="$OUT/data/retrieval-dev.tsv" ${BIENCODER_ARGS:-} --quiet
"$TUNELAB" recommend eval "$TEST" --run "$OUT/biencoder" --json "$OUT/hr-biencoder.json"
echo "results: $OUT/hr-popularity.json $OUT/hr-untuned.json $OUT/hr-pairs.json $OUT/hr-biencoder.json"
