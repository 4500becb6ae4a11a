#!/usr/bin/env bash
# Recipe 1, end to end: intent classifier + LoRA assistant trained, evaluated, served, tried with the openai client.
#   examples/apps/customer-service/run.sh [OUT_DIR]        (default runs/apps/customer-service)
# Extra settings go through the environment: INTENT_ARGS / ASSISTANT_ARGS (key=value overrides), TUNELAB (the command).
set -euo pipefail
cd "$(dirname "$0")/../../.."
APP=examples/apps/customer-service
OUT=${1:-runs/apps/customer-service}
TUNELAB=${TUNELAB:-tunelab}
PYTHON=${PYTHON:-python}
. examples/apps/lib.sh
mkdir -p "$OUT"

# 1. the intent classifier (customer message -> intent); its dev accuracy is in $OUT/intent/metrics.json
# shellcheck disable=SC2086
"$TUNELAB" train "$APP/intent.yaml" output_dir="$OUT/intent" ${INTENT_ARGS:-} --quiet
# 2. the assistant: LoRA on SmolLM2-135M, intent as the system hint; dev loss and ROUGE-L in $OUT/assistant/metrics.json
# shellcheck disable=SC2086
"$TUNELAB" train "$APP/assistant.yaml" output_dir="$OUT/assistant" ${ASSISTANT_ARGS:-} --quiet
# 3. both served by one server; a three-turn chat with history through the openai client
start_server "$OUT/serve.log" assistant="$OUT/assistant" intent="$OUT/intent"
"$PYTHON" "$APP/chat.py" --base-url "$URL" --out "$OUT/transcript.md" ${CHAT_ARGS:-}
curl -sf "${URL%/v1}/metrics" > "$OUT/serve-metrics.txt"
echo "results: $OUT/intent/metrics.json $OUT/assistant/metrics.json $OUT/transcript.md"
