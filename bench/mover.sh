#!/usr/bin/env bash
# bench/mover.sh — issue 18's "a retention sweep never costs acceptance more
# than 10 % of throughput or p99", end to end: what the history mover (the
# step that makes retention a file drop, docs/flow.md) costs the real
# daemon's acceptance under a sustained saturating load.
#
# Each pair runs the same load twice on a fresh daemon and sink: `mover`
# with the default `[retention] move_after = "1m"` (the mover starts taking
# delivered messages to their day files a minute in and works for the
# rest of the run), and `control` with move_after = "1h" (the mover never
# starts during the run). The driver sends N messages of SIZE bytes over C
# sessions (STARTTLS + AUTH, as bench/run.sh) and reports each INTERVAL's
# acceptances (smtpload -interval); /metrics is sampled at the same pace
# for the mover's backlog. The comparison is over the windows from FROM_S
# seconds on (default 90: the mover has work and has been at it for half a
# minute) up to the last full window: accepted/s (mean) and the median
# of the windows' p99, mover against control. Pairs alternate which goes
# first. One JSON line per run and a summary line on stdout.
#
# RATE (messages/s) offers the load open-loop at a set pace below what the
# daemon can take (smtpload -rate): throughput is then the offered rate
# and the comparison is p99 (counted from each message's due time) and
# whether the mover keeps up (the backlog's last sample).
set -euo pipefail

N=${N:-300000}
SIZE=${SIZE:-2048}
C=${C:-20}
PAIRS=${PAIRS:-1}
RATE=${RATE:-0}                       # offered messages/s (0: as fast as accepted)
INTERVAL=${INTERVAL:-10}              # seconds per window
FROM_S=${FROM_S:-90}                  # first window compared
MOVE_AFTER=${MOVE_AFTER:-1m}
CONTROL_MOVE_AFTER=${CONTROL_MOVE_AFTER:-1h}
SINK_PORT=${SINK_PORT:-12525}
SINK_STATUS_PORT=${SINK_STATUS_PORT:-12580}
SMTPMUX_PORT=${SMTPMUX_PORT:-10587}
SMTPMUX_HTTP_PORT=${SMTPMUX_HTTP_PORT:-10080}
SMTPMUX_METRICS_PORT=${SMTPMUX_METRICS_PORT:-19467}
DRIVER_TIMEOUT=${DRIVER_TIMEOUT:-1800}
KEEP=${KEEP:-0}
WARMUP=0 WAIT_TIMEOUT=0

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SAMPLER_PID=""
cleanup_extra() { [[ -z $SAMPLER_PID ]] || stop_pid "$SAMPLER_PID"; }

# sample_backlog OUT: every INTERVAL seconds, one line "seconds backlog
# free_pages freelist_bytes file_bytes commits commit_seconds" (the main
# file's freelist, which every commit writes, grows with its free pages;
# the last two are running totals: their differences give each window's
# mean commit time).
sample_backlog() {
	local t0 v
	t0=$(date +%s)
	while :; do
		v=$(curl -fsS --max-time 5 "http://127.0.0.1:$SMTPMUX_METRICS_PORT/metrics" 2>/dev/null |
			awk '/^smtpmux_history_backlog_messages / {b = $2} /^smtpmux_store_free_pages\{state="free"\}/ {f = $2}
				/^smtpmux_store_freelist_bytes / {l = $2} /^smtpmux_store_file_bytes / {s = $2}
				/^smtpmux_store_commits_total / {c = $2} /^smtpmux_store_commit_seconds_total / {cs = $2}
				END {printf "%s %s %s %s %s %s", b, f, l, s, c, cs}') || v=""
		echo "$(($(date +%s) - t0)) ${v:-? ? ? ? ? ?}"
		sleep "$INTERVAL"
	done >"$1"
}

# one_run VARIANT MOVE_AFTER: a fresh sink and daemon, the load, one JSON line.
one_run() {
	local variant=$1 after=$2 load backlog
	start_sink
	# A daemon directory per pair: a second pair on the first one's store
	# would find its root key (and 2 GB of history) there.
	SMX_NAME=smtpmux-$variant-$p
	# PROFILE_DIR: each run's daemon CPU profile, <variant>-<pair>.prof there.
	[[ -z ${PROFILE_DIR:-} ]] || export SMTPMUX_CPUPROFILE=$PROFILE_DIR/$variant-$p.prof
	SMTPMUX_EXTRA=$(printf '[metrics]\nlisten = "127.0.0.1:%s"\n[retention]\nmove_after = "%s"\n' "$SMTPMUX_METRICS_PORT" "$after")
	if ! start_smtpmux || ! setup_smtpmux_relay; then
		die "smtpmux did not start: $SKIP"
	fi
	smtpmux_driver_flags
	sample_backlog "$WORK/backlog-$variant.txt" &
	SAMPLER_PID=$!
	log "$variant: $N × $SIZE B over $C sessions, move_after=$after"
	job "$WORK/load-$variant.json" timeout "$DRIVER_TIMEOUT" "$BIN/smtpload" -n "$N" -size "$SIZE" -c "$C" \
		-interval "${INTERVAL}s" -rate "$RATE" -run "mover-$variant-$$" "${SMX_FLAGS[@]}" 2>>"$WORK/driver.log"
	stop_pid "$SAMPLER_PID"
	SAMPLER_PID=""
	stop_smtpmux
	stop_pid "$SINK_PID"
	SINK_PID=""
	((KEEP)) || rm -rf "$SMX_DIR/data"
	load=$(cat "$WORK/load-$variant.json")
	[[ -n $load ]] || die "$variant: the driver timed out or crashed"
	backlog=$(awk 'function v(x) { return (x == "?" || x == "") ? "null" : x }
		{printf "%s[%s,%s,%s,%s,%s,%s,%s]", (NR > 1 ? "," : ""), $1, v($2), v($3), v($4), v($5), v($6), v($7)}' "$WORK/backlog-$variant.txt")
	jq -c --arg v "$variant" --arg after "$after" --argjson from "$FROM_S" --argjson iv "$INTERVAL" --argjson backlog "[$backlog]" '
		. as $r | ([.windows[] | select(.start_s >= $from and .start_s + $iv <= ($r.elapsed_s | floor))]) as $w |
		{variant: $v, move_after: $after, sent, failed, accepted_per_s, p99_ms, elapsed_s,
		 compared_windows: ($w | length),
		 window_accepted_per_s: (if ($w | length) > 0 then ([$w[].accepted_per_s] | add / length) else null end),
		 window_p99_ms: (if ($w | length) > 0 then ([$w[].p99_ms] | sort | .[length / 2 | floor]) else null end),
		 windows: [.windows[] | [.start_s, (.accepted_per_s | round), .p99_ms]],
		 backlog: $backlog}' <<<"$load" | tee -a "$RUNLOG"
}

require_tools
build_harness
log "N=$N SIZE=$SIZE C=$C RATE=$RATE PAIRS=$PAIRS INTERVAL=${INTERVAL}s FROM_S=$FROM_S, $(nproc) cores, work dir $WORK"
for ((p = 1; p <= PAIRS; p++)); do
	if ((p % 2)); then
		one_run mover "$MOVE_AFTER"
		one_run control "$CONTROL_MOVE_AFTER"
	else
		one_run control "$CONTROL_MOVE_AFTER"
		one_run mover "$MOVE_AFTER"
	fi
done
jq -sc '
	def med: map(select(. != null)) | sort | .[length / 2 | floor];
	(map(select(.variant == "mover"))) as $m | (map(select(.variant == "control"))) as $c |
	{system: "smtpmux-mover", pairs: ($m | length),
	 mover_accepted_per_s: ([$m[].window_accepted_per_s] | med), control_accepted_per_s: ([$c[].window_accepted_per_s] | med),
	 mover_p99_ms: ([$m[].window_p99_ms] | med), control_p99_ms: ([$c[].window_p99_ms] | med),
	 throughput_cost: (1 - ([$m[].window_accepted_per_s] | med) / ([$c[].window_accepted_per_s] | med)),
	 p99_cost: (([$m[].window_p99_ms] | med) / ([$c[].window_p99_ms] | med) - 1),
	 mover_backlog_end: [$m[].backlog[-1][1]]}' "$RUNLOG"
