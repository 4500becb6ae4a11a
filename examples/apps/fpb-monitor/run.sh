#!/usr/bin/env bash
# Recipe 2, end to end: financial sentiment on Financial PhraseBank, methods compared, a headline stream monitored
# with an alert rule, and the classifier served with Prometheus metrics.
#   examples/apps/fpb-monitor/run.sh [OUT_DIR]        (default runs/apps/fpb)
# Environment: METHODS (default full,lora,bitfit), COMPARE_ARGS (key=value overrides), TUNELAB (the command),
# STREAM (a JSONL/text file of headlines; default: the FPB dev sentences in file order).
set -euo pipefail
cd "$(dirname "$0")/../../.."
APP=examples/apps/fpb-monitor
OUT=${1:-runs/apps/fpb}
TUNELAB=${TUNELAB:-tunelab}
. examples/apps/lib.sh
mkdir -p "$OUT"

# 1. one classifier per method, same data/seed/steps; compare.md has dev accuracy and macro-F1 per method
# shellcheck disable=SC2086
"$TUNELAB" compare "$APP/compare.yaml" output_dir="$OUT/compare" ${COMPARE_ARGS:-} --methods "${METHODS:-full,lora,bitfit}"
RUN="$OUT/compare/${MONITOR_METHOD:-lora}"

# 2. the stream: predictions for each headline, then the alert rule over a sliding window
if [ -n "${STREAM:-}" ]; then
    "$TUNELAB" predict "$RUN" < "$STREAM" > "$OUT/predictions.jsonl"
else
    "$TUNELAB" predict "$RUN" --data ../shared/data/fpb/dev.txt > "$OUT/predictions.jsonl"
fi
rm -f "$OUT/alerts.jsonl"  # this recipe's own output of an earlier run
"$TUNELAB" monitor --input "$OUT/predictions.jsonl" --label negative --window "${WINDOW:-20}" \
    --threshold "${THRESHOLD:-0.3}" --alerts "$OUT/alerts.jsonl" --metrics "$OUT/monitor.prom" > /dev/null

# 3. the same classifier behind `tunelab serve`: /v1/predict, then its Prometheus metrics
start_server "$OUT/serve.log" "fpb=$RUN"
curl -sf "$URL/predict" -H 'Content-Type: application/json' \
    -d '{"model": "fpb", "input": ["Operating profit fell to EUR 1.2 mn from EUR 3.4 mn.", "Sales rose 12 % in the quarter."]}' \
    > "$OUT/serve-predict.json"
curl -sf "${URL%/v1}/metrics" > "$OUT/serve-metrics.txt"
echo "results: $OUT/compare/compare.md $OUT/alerts.jsonl $OUT/monitor.prom $OUT/serve-metrics.txt"
