#!/usr/bin/env bash
# bench/queued.sh — issue 5's "100,000 messages queued behind a stopped
# upstream": peak RSS of smtpmux while they are queued and while they drain,
# and the drain rate once the upstream is back.
#
# smtpmux starts with an `smtp` provider pointing at the sink's address while
# the sink is NOT running. The driver sends N messages of SIZE bytes over C
# sessions (STARTTLS + AUTH PLAIN, as bench/run.sh does); every delivery
# attempt meets a refused connection, the breaker pulls the provider (SPEC
# §5: 3 connection failures in 5 min) and the messages wait in the queue.
# Once the daemon is idle, the sink starts and the operator does what SPEC
# §3 offers to bring the provider back: POST /providers/{id}/test, whose
# success clears the breaker. The script then waits for every message at the
# sink and, unless NORMAL_N=0, measures the normal end-to-end rate on the
# same daemon for comparison. One JSON line on stdout; see bench/README.md.
set -euo pipefail

N=${N:-100000}
SIZE=${SIZE:-2048}
C=${C:-20}
NORMAL_N=${NORMAL_N:-10000}            # messages of the normal run after the drain (0: none)
SINK_PORT=${SINK_PORT:-12525}
SINK_STATUS_PORT=${SINK_STATUS_PORT:-12580}
SMTPMUX_PORT=${SMTPMUX_PORT:-10587}
SMTPMUX_HTTP_PORT=${SMTPMUX_HTTP_PORT:-10080}
SMTPMUX_METRICS_PORT=${SMTPMUX_METRICS_PORT:-19466}
DRIVER_TIMEOUT=${DRIVER_TIMEOUT:-1800} # seconds, the fill
IDLE_TIMEOUT=${IDLE_TIMEOUT:-$((120 + N / 200))} # seconds for the daemon to settle after the fill
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-$((120 + N / 100))} # seconds for every message to reach the sink
WAIT_TIMEOUT=${WAIT_TIMEOUT:-$((120 + NORMAL_N / 100))} # the normal run's drain
KEEP=${KEEP:-0}
WARMUP=0

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# /metrics is on the daemon's [metrics] listener (default 127.0.0.1:9464,
# which another daemon on the machine may hold; the API port answers 404):
# its own port here.
SMTPMUX_EXTRA=$(printf '[metrics]\nlisten = "127.0.0.1:%s"\n%s' "$SMTPMUX_METRICS_PORT" "${SMTPMUX_EXTRA:-}")
metrics() { curl -fsS --max-time 30 "http://127.0.0.1:$SMTPMUX_METRICS_PORT/metrics"; }

# metric NAME [LABEL-MATCH]: sum of the series of NAME whose labels contain
# LABEL-MATCH (e.g. 'outcome="sent"').
metric() {
	metrics | awk -v name="$1" -v m="${2:-}" '
		index($0, name) == 1 && (substr($0, length(name) + 1, 1) == "{" || substr($0, length(name) + 1, 1) == " ") &&
		(m == "" || index($0, m) > 0) { s += $NF } END { printf "%d\n", s }'
}

# attempts: {"<outcome>": count, …} over all providers.
attempts() {
	metrics | awk '/^smtpmux_delivery_attempts_total\{/ {
		match($0, /outcome="[^"]*"/); o = substr($0, RSTART + 9, RLENGTH - 10); s[o] += $NF }
		END { printf "{"; sep = ""; for (o in s) { printf "%s\"%s\":%d", sep, o, s[o]; sep = "," } printf "}\n" }'
}

rss_now() { awk '/^VmRSS:/ {printf "%.1f\n", $2 / 1024}' "/proc/$SMX_PID/status"; }
# mem_split: the daemon's resident memory now, split into anonymous (Go
# heap, stacks, runtime) and file-backed (bbolt's memory map, the binary),
# and the Go heap in use, in MB.
# (The heap figure comes from /metrics, read after /proc: see wait_idle.)
mem_split() {
	local status heap
	status=$(cat "/proc/$SMX_PID/status")
	heap=$(metric go_memstats_heap_inuse_bytes)
	awk -v heap="$heap" '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} /^RssShmem:/ {s = $2}
		END {printf "{\"anon_mb\":%.1f,\"file_mb\":%.1f,\"shmem_mb\":%.1f,\"go_heap_inuse_mb\":%.1f}\n", a / 1024, f / 1024, s / 1024, heap / 1048576}' <<<"$status"
}
file_mb() { stat -c %s "$1" 2>/dev/null | awk '{printf "%.1f\n", $1 / 1048576}'; }
dir_mb() { du -sb "$1" 2>/dev/null | awk '{printf "%.1f\n", $1 / 1048576}'; }

# ---------------------------------------------------------------- set-up
require_tools
build_harness
log "N=$N SIZE=$SIZE C=$C NORMAL_N=$NORMAL_N, $(nproc) cores, work dir $WORK"
smtpmux_or_skip smtpmux-queued
DB=$SMX_DIR/data/smtpmux.db

# ---------------------------------------------------------------- fill
log "fill: $N messages while the upstream (127.0.0.1:$SINK_PORT) is down"
start_mem "$SMX_PID" "$WORK/mem-queued.json"
cpu0=$(cpu_busy)
job "$WORK/load.json" timeout "$DRIVER_TIMEOUT" "$BIN/smtpload" -n "$N" -size "$SIZE" -c "$C" -run "queued-$$" "${SMX_FLAGS[@]}" 2>>"$WORK/driver.log"
load=$(cat "$WORK/load.json")
[[ -n $load ]] || load='{"sent":0,"failed":'"$N"',"first_error":"driver timed out or crashed"}'
sent=$(jq -r '.sent' <<<"$load")
log "fill: $(jq -c '{sent, failed, accepted_per_s, first_error}' <<<"$load")"
idle=true
fill_end_ns=$(date +%s%N)
wait_idle "$IDLE_TIMEOUT" || idle=false
settle_s=$(awk -v a="$fill_end_ns" -v b="$(date +%s%N)" 'BEGIN{printf "%.1f\n", (b - a) / 1e9 - 3}')
stop_mem "$WORK/mem-queued.json"
mem_queued=$MEM_JSON
cpu1=$(cpu_busy)
rss_queued_now=$(rss_now)
split_queued=$(mem_split)
health=$(api GET "/api/v1/providers/$SMX_PROVIDER" | jq -c '.data.health')
queued=$(metric smtpmux_queue_messages 'state="queued"')
attempts_queued=$(attempts)
rss_after_scrape=$(rss_now)
db_queued=$(file_mb "$DB")
spool_queued=$(dir_mb "$SMX_DIR/data/spool")
log "queued: idle=$idle queued=$queued health=$health attempts=$attempts_queued rss_now=${rss_queued_now}MB $split_queued after /metrics ${rss_after_scrape}MB store=${db_queued}MB mem=$mem_queued"

# ---------------------------------------------------------------- drain
log "drain: upstream back, provider tested"
start_sink
start_mem "$SMX_PID" "$WORK/mem-drain.json"
recover_ns=$(date +%s%N)
test_result=$(api POST "/api/v1/providers/$SMX_PROVIDER/test" | jq -c '.data') || test_result=null
log "drain: test → $test_result"
job "$WORK/sink.json" curl -sS --max-time $((DRAIN_TIMEOUT + 10)) "$SINK_HTTP/wait?n=$sent&timeout=${DRAIN_TIMEOUT}s"
sink=$(cat "$WORK/sink.json")
[[ -n $sink ]] || sink=$(curl -sS "$SINK_HTTP/status")
sleep 2 # late duplicates would show up here
sink=$(curl -sS "$SINK_HTTP/status" | jq -c --argjson w "$sink" '. + {timed_out: ($w.timed_out // false)}')
stop_mem "$WORK/mem-drain.json"
mem_drain=$MEM_JSON
cpu2=$(cpu_busy)
attempts_drained=$(attempts)
queued_after=$(metric smtpmux_queue_messages 'state="queued"')
db_drained=$(file_mb "$DB")
split_drained=$(mem_split)
log "drained: $(jq -c '{unique, duplicates, bad_checksum, timed_out}' <<<"$sink") attempts=$attempts_drained store=${db_drained}MB $split_drained mem=$mem_drain"

# ---------------------------------------------------------------- normal rate, same daemon
normal=null
if ((NORMAL_N > 0)); then
	log "normal: $NORMAL_N messages end to end with the upstream up"
	N=$NORMAL_N measure smtpmux-normal 1 "$SMX_PID" "${SMX_FLAGS[@]}"
	normal=$(summarize smtpmux-normal)
fi
stop_smtpmux

jq -nc --argjson load "$load" --argjson sink "$sink" --argjson mq "$mem_queued" --argjson md "$mem_drain" \
	--argjson health "$health" --argjson test "$test_result" --argjson aq "$attempts_queued" --argjson ad "$attempts_drained" \
	--argjson normal "$normal" --argjson recover_ns "$recover_ns" --argjson idle "$idle" \
	--argjson split_queued "$split_queued" --argjson split_drained "$split_drained" \
	--argjson queued "$queued" --argjson queued_after "$queued_after" \
	--arg settle "$settle_s" --arg rssq "$rss_queued_now" --arg rsss "$rss_after_scrape" --arg dbq "$db_queued" --arg spq "$spool_queued" --arg dbd "$db_drained" \
	--argjson cpu_fill "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{print b-a}')" \
	--argjson cpu_drain "$(awk -v a="$cpu1" -v b="$cpu2" 'BEGIN{print b-a}')" '
	def r1: if . == null then null else (. * 10 | round) / 10 end;
	def r2: if . == null then null else (. * 100 | round) / 100 end;
	def per_s(n; a; b): if (a // 0) > 0 and (b // 0) > a then n / ((b - a) / 1e9) else null end;
	{system: "smtpmux-queued", n: '"$N"', size: '"$SIZE"', c: '"$C"',
	 sent: $load.sent, failed: $load.failed, accepted_per_s: ($load.accepted_per_s | r1),
	 queued: $queued, idle_after_fill: $idle, settle_s: ($settle | tonumber),
	 peak_rss_queued_mb: ($mq.peak_rss_mb | r1), rss_queued_idle_mb: ($rssq | tonumber),
	 rss_after_metrics_scrape_mb: ($rsss | tonumber),
	 peak_rss_drain_mb: ($md.peak_rss_mb | r1),
	 rss_queued_split: $split_queued, rss_drained_split: $split_drained,
	 store_queued_mb: ($dbq | tonumber), spool_queued_mb: ($spq | tonumber), store_drained_mb: ($dbd | tonumber),
	 health_queued: $health, test: $test,
	 wake_s: (if ($sink.first_unix_ns // 0) > 0 then (($sink.first_unix_ns - $recover_ns) / 1e9 | r2) else null end),
	 drain_s: (if ($sink.last_unix_ns // 0) > 0 then (($sink.last_unix_ns - $sink.first_unix_ns) / 1e9 | r2) else null end),
	 drain_delivered_per_s: (per_s($sink.unique; $sink.first_unix_ns; $sink.last_unix_ns) | r1),
	 drain_from_recovery_per_s: (per_s($sink.unique; $recover_ns; $sink.last_unix_ns) | r1),
	 normal_delivered_per_s: ($normal.delivered_per_s // null),
	 drain_vs_normal: (if ($normal.delivered_per_s // 0) > 0 then (per_s($sink.unique; $sink.first_unix_ns; $sink.last_unix_ns) / $normal.delivered_per_s | r2) else null end),
	 delivered: $sink.unique, duplicates: $sink.duplicates, bad_checksum: $sink.bad_checksum,
	 incomplete: ($sink.unique < $load.sent), queued_after_drain: $queued_after,
	 attempts_while_queued: $aq, attempts_total: $ad,
	 attempts_per_message: (if $sink.unique > 0 then (([$ad[]] | add) / $load.sent | r2) else null end),
	 relay_cpu_fill_s: ($mq.cpu_s | r2), relay_cpu_drain_s: ($md.cpu_s | r2),
	 machine_cpu_fill_s: ($cpu_fill | r2), machine_cpu_drain_s: ($cpu_drain | r2),
	 normal: $normal}'
