#!/usr/bin/env bash
# bench/idle.sh — issue 19's "1,000 idle sessions ≤ 20 MB": what C idle,
# authenticated TLS sessions cost smtpmux in resident memory.
#
# smtpmux starts as for bench/run.sh (default [smtp] caps: max_connections
# 1000, max_connections_per_ip 50), relays WARMUP messages to the sink so
# that the delivery pool, the store's pages and the caches exist as in real
# use, and is left to go quiet. Its RSS is read from /proc; then the driver
# (smtpload -idle) opens C sessions — greeting, EHLO, STARTTLS, EHLO, AUTH
# PLAIN with the sending key, exactly as a sending client — PER_IP of them
# per source address (127.0.0.2, 127.0.0.3, …), holds them while the RSS
# settles and is read again, then QUITs them. One JSON line on stdout; see
# bench/README.md.
set -euo pipefail

C=${C:-1000}
PER_IP=${PER_IP:-40}        # sessions per source address (the daemon allows 50)
WARMUP=${WARMUP:-200}       # messages relayed before the baseline (0: none)
SIZE=${SIZE:-2048}
N=$WARMUP
SINK_PORT=${SINK_PORT:-12525}
SINK_STATUS_PORT=${SINK_STATUS_PORT:-12580}
SMTPMUX_PORT=${SMTPMUX_PORT:-10587}
SMTPMUX_HTTP_PORT=${SMTPMUX_HTTP_PORT:-10080}
SMTPMUX_METRICS_PORT=${SMTPMUX_METRICS_PORT:-19465}
DRIVER_TIMEOUT=${DRIVER_TIMEOUT:-300}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-120}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-60}     # seconds for the daemon to go quiet (before and after)
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-30} # seconds for the RSS to settle with the sessions open
LINGER=${LINGER:-0}                  # seconds to hold on after the measurement, RSS read again (< read_timeout, 2m)
KEEP=${KEEP:-0}

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The memory helpers below read /proc before /metrics, as queued.sh does: a
# scrape walks the store's due index and maps store pages into the daemon.
# /metrics is on the daemon's [metrics] listener (default 127.0.0.1:9464,
# which another daemon on the machine may hold): its own port here.
SMTPMUX_EXTRA=$(printf '[metrics]\nlisten = "127.0.0.1:%s"\n%s' "$SMTPMUX_METRICS_PORT" "${SMTPMUX_EXTRA:-}")
metric() {
	curl -fsS --max-time 30 "http://127.0.0.1:$SMTPMUX_METRICS_PORT/metrics" |
		awk -v m="$1" '$1 == m { v = $2 } END { printf "%d\n", v + 0 }'
}
# status_kb FIELD: a /proc/<pid>/status figure in KiB (VmRSS, RssAnon, RssFile).
status_kb() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$SMX_PID/status"; }

# wait_rss_settled SECONDS: until VmRSS moves less than 128 KiB over 3 s.
wait_rss_settled() {
	local prev r i quiet=0
	prev=$(status_kb VmRSS)
	for ((i = 0; i < $1; i++)); do
		sleep 1
		r=$(status_kb VmRSS)
		if ((r - prev < 128 && prev - r < 128)); then
			((++quiet >= 3)) && return 0
		else
			quiet=0
		fi
		prev=$r
	done
	return 1
}

# snapshot: {rss_kb, anon_kb, file_kb} from /proc, then the Go runtime's
# figures from /metrics.
snapshot() {
	local rss anon file heap stack gor gc
	rss=$(status_kb VmRSS) anon=$(status_kb RssAnon) file=$(status_kb RssFile)
	heap=$(metric go_memstats_heap_inuse_bytes) stack=$(metric go_memstats_stack_inuse_bytes) gor=$(metric go_goroutines)
	gc=$(metric go_gc_gogc_percent)
	jq -nc --argjson rss "$rss" --argjson anon "$anon" --argjson file "$file" --argjson heap "$heap" \
		--argjson stack "$stack" --argjson gor "$gor" --argjson gc "$gc" \
		'{rss_kb: $rss, anon_kb: $anon, file_kb: $file, go_heap_inuse_kb: ($heap / 1024 | floor),
		  go_stack_inuse_kb: ($stack / 1024 | floor), goroutines: $gor, gc_percent: $gc}'
}

cleanup_extra() { exec 3>&- 2>/dev/null || true; }

# ---------------------------------------------------------------- set-up
require_tools
build_harness
log "C=$C PER_IP=$PER_IP WARMUP=$WARMUP, $(nproc) cores, work dir $WORK"
smtpmux_or_skip smtpmux-idle
if ((WARMUP > 0)); then
	start_sink
	log "warm-up: $WARMUP messages through smtpmux to the sink"
	measure smtpmux warmup 0 "${SMX_FLAGS[@]}"
fi
quiet_before=true
wait_idle "$IDLE_TIMEOUT" || quiet_before=false
# Quiet includes the collector's setting: smtpmux collects at +100 % while
# its store commits and returns to +50 % (with the memory given back) 10 s
# after the last commit (internal/gctune), unless GOGC is set.
if [[ -z ${GOGC:-} ]]; then
	for ((i = 0; i < IDLE_TIMEOUT; i++)); do
		(($(metric go_gc_gogc_percent) == 50)) && break
		sleep 1
	done
fi
before=$(snapshot)
log "before: quiet=$quiet_before $before"

# ---------------------------------------------------------------- sessions
# The driver holds the sessions until its stdin, a FIFO this script holds
# open on fd 3, reaches EOF.
mkfifo "$WORK/hold"
exec 3<>"$WORK/hold"
timeout "$DRIVER_TIMEOUT" "$BIN/smtpload" -idle -c "$C" -per-ip "$PER_IP" "${SMX_FLAGS[@]}" \
	<"$WORK/hold" >"$WORK/idle.jsonl" 2>>"$WORK/driver.log" 3>&- &
JOB_PID=$!
up=""
for ((i = 0; i < DRIVER_TIMEOUT * 10; i++)); do
	up=$(head -1 "$WORK/idle.jsonl")
	[[ -z $up ]] || break
	kill -0 "$JOB_PID" 2>/dev/null || break
	sleep 0.1
done
[[ -n $up ]] || die "driver ended without its first line: $(tail -3 "$WORK/driver.log")"
log "sessions: $up"
settled=true
wait_rss_settled "$SETTLE_TIMEOUT" || settled=false
quiet_after=true
wait_idle "$IDLE_TIMEOUT" || quiet_after=false
after=$(snapshot)
log "after: settled=$settled quiet=$quiet_after $after"
open_after=$(ss -Htn state established "( sport = :$SMTPMUX_PORT )" 2>/dev/null | wc -l)
linger=null
if ((LINGER > 0)); then
	sleep "$LINGER"
	linger=$(snapshot)
	log "after $LINGER s more: $linger"
fi

exec 3>&-
wait "$JOB_PID" || true
JOB_PID=""
done_line=$(sed -n 2p "$WORK/idle.jsonl")
[[ -n $done_line ]] || done_line=null
log "quit: $done_line"
stop_smtpmux

jq -nc --argjson up "$up" --argjson done "$done_line" --argjson b "$before" --argjson a "$after" \
	--argjson settled "$settled" --argjson qb "$quiet_before" --argjson qa "$quiet_after" --argjson open "$open_after" --argjson linger "$linger" '
	def mb: (. / 1024 * 10 | round) / 10;
	def per(x): if $up.up > 0 then (x / $up.up * 10 | round) / 10 else null end;
	{system: "smtpmux-idle", c: '"$C"', per_ip: '"$PER_IP"', warmup: '"$WARMUP"',
	 up: $up.up, failed: $up.failed, connect_s: (($up.connect_s * 100 | round) / 100),
	 open_at_measure: $open, quit_ok: ($done.quit_ok // null),
	 rss_before_mb: ($b.rss_kb | mb), rss_after_mb: ($a.rss_kb | mb),
	 rss_delta_mb: (($a.rss_kb - $b.rss_kb) | mb),
	 rss_per_session_kib: per($a.rss_kb - $b.rss_kb),
	 anon_per_session_kib: per($a.anon_kb - $b.anon_kb),
	 go_heap_per_session_kib: per($a.go_heap_inuse_kb - $b.go_heap_inuse_kb),
	 go_stack_per_session_kib: per($a.go_stack_inuse_kb - $b.go_stack_inuse_kb),
	 goroutines_per_session: (if $up.up > 0 then (($a.goroutines - $b.goroutines) / $up.up * 100 | round) / 100 else null end),
	 target_20mb: ((($a.rss_kb - $b.rss_kb) / 1024) <= 20),
	 rss_after_linger_mb: (if $linger == null then null else ($linger.rss_kb | mb) end),
	 before: $b, after: $a, after_linger: $linger, rss_settled: $settled, quiet_before: $qb, quiet_after: $qa,
	 first_error: ($up.first_error // $done.first_error // null)}'
