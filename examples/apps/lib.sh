# Shared by the recipes' run.sh: start `tunelab serve` on a free port and wait until it answers.
# Usage: start_server LOG_FILE TARGET... ; then $URL is its /v1 address and $SERVER its process id (stopped on exit).

start_server() {
    local log=$1
    shift
    "$TUNELAB" serve "$@" --port 0 2> "$log" &
    SERVER=$!
    trap 'kill "$SERVER" 2>/dev/null || true' EXIT
    URL=""
    for _ in $(seq 1 600); do
        URL=$(grep -o 'http://[^ ]*/v1' "$log" | head -n 1 || true)
        if [ -n "$URL" ] && curl -sf "${URL%/v1}/health" > /dev/null; then
            return 0
        fi
        if ! kill -0 "$SERVER" 2> /dev/null; then
            echo "tunelab serve stopped; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 1
    done
    echo "tunelab serve did not answer within 10 minutes (log: $log)" >&2
    return 1
}
