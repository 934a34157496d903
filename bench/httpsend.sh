#!/usr/bin/env bash
# bench/httpsend.sh — peak memory of concurrent large HTTP sends (issue 12,
# item 10). Starts smtpmux with an `smtp` provider pointing at the sink,
# posts C copies of one /emails/send request with an ATTACH-byte attachment
# (a 17 MiB one makes a 23.8 MB request) at the same moment, and prints one
# JSON line: each answer's status, smtpmux's RSS before, and the peak RSS of
# its process tree while the sends ran (bench/cmd/procmem).
#
# Parameters (environment): C concurrent sends (3), ATTACH bytes (17 MiB),
# SMTPMUX_HTTP_EXTRA lines for the [http] table, e.g.
# "max_send_bytes_in_flight = 1073741824" to take the send byte bound out of
# the way. Everything listens on 127.0.0.1; every process started is
# stopped on exit.
set -euo pipefail

C=${C:-3}
ATTACH=${ATTACH:-$((17 << 20))}
SINK_PORT=${SINK_PORT:-13525}
SINK_STATUS_PORT=${SINK_STATUS_PORT:-13580}
SMTPMUX_PORT=${SMTPMUX_PORT:-13587}
SMTPMUX_HTTP_PORT=${SMTPMUX_HTTP_PORT:-13080}
KEEP=${KEEP:-0}

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_tools
build_harness
start_sink
start_smtpmux || die "smtpmux: $SKIP"
setup_smtpmux_relay || die "smtpmux: $SKIP"

REQ=$WORK/send.json
{
	printf '{"from":{"email":"app@example.com"},"to":{"email":"user@example.net"},'
	printf '"subject":"large","text_body":"see attached",'
	printf '"attachments":[{"filename":"report.pdf","content":"'
	{ printf '%%PDF-1.7\n'; head -c $((ATTACH - 9)) /dev/urandom; } | base64 -w0
	printf '"}]}'
} >"$REQ"
log "request: $(stat -c %s "$REQ") bytes, $C at once"

rss_before=$(awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$SMX_PID/status")
# Sampled every 20 ms: one send lasts about a second.
"$BIN/procmem" -pid "$SMX_PID" -interval 20ms >"$WORK/mem.json" &
MEM_PID=$!
sleep 0.5 # procmem's first samples
pids=()
for ((i = 0; i < C; i++)); do
	curl -sS -o /dev/null -w '%{http_code}\n' --max-time 120 -X POST \
		-H "Authorization: Bearer $SMX_KEY" -H 'Content-Type: application/json' \
		--data-binary "@$REQ" "http://127.0.0.1:$SMTPMUX_HTTP_PORT/api/v1/emails/send" >"$WORK/code.$i" &
	pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done
sleep 1 # a sample after the last answer
stop_mem "$WORK/mem.json"
codes=$(cat "$WORK"/code.* | sort | uniq -c | awk '{printf "%s%s×%s", (NR>1?" ":""), $1, $2}')
jq -nc --arg codes "$codes" --argjson rss0 "$rss_before" --argjson mem "$MEM_JSON" \
	--argjson size "$(stat -c %s "$REQ")" --argjson c "$C" \
	'{request_bytes: $size, concurrent: $c, answers: $codes, rss_before_mb: $rss0,
	  peak_rss_mb: $mem.peak_rss_mb, samples: $mem.samples}'
