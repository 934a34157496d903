#!/usr/bin/env bash
# bench/mover.sh — issue 18's "a retention sweep never costs acceptance more
# than 10 % of throughput or p99", end to end: what writing the history
# (the finished messages' day files, which make retention a file drop:
# docs/flow.md) costs the real daemon's acceptance under a sustained
# saturating load, measured against builds of other revisions.
#
# VARIANTS is a list of name=rev[=move_after]: each is a build of git
# revision rev of this repository (HEAD: the working tree as committed)
# run with, when given, `[retention] move_after` (revisions ce7c6cd to the
# one before the history flusher had it: how long finished mail stayed in
# the main file before the mover took it; 1h keeps the mover idle for the
# whole run — the history deferred, the baseline). The default compares
# this tree with that baseline and with the old mover:
#
#	flush=HEAD  deferred=f09382a=1h  mover=f09382a=1m
#
# Each round runs every variant once, on a fresh daemon and sink, in turn
# (the order rotating by round). The driver sends N messages of SIZE bytes
# over C sessions (STARTTLS + AUTH, as bench/run.sh) and reports each
# INTERVAL's acceptances (smtpload -interval); /metrics is sampled as often
# for the history backlog. Runs are compared over the windows from FROM_S
# seconds on (default 90: a minute-delayed mover has been at work for half
# a minute) up to the last full window: accepted/s (mean) and the median of
# the windows' p99. One JSON line per run and a summary per variant, with
# its cost against the first variant named `deferred` (if any).
set -euo pipefail

N=${N:-300000}
SIZE=${SIZE:-2048}
C=${C:-20}
ROUNDS=${ROUNDS:-1}
INTERVAL=${INTERVAL:-10}              # seconds per window
FROM_S=${FROM_S:-90}                  # first window compared
VARIANTS=${VARIANTS:-"flush=HEAD deferred=08e4afb=1h mover=08e4afb=1m"}
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
cleanup_extra() {
	[[ -z $SAMPLER_PID ]] || stop_pid "$SAMPLER_PID"
	git -C "$REPO" worktree prune 2>/dev/null || true
}

# build_rev REV: the daemon built from REV into $BIN/smtpmux-REV.
build_rev() {
	local rev=$1 src=$WORK/src-$1
	[[ -x $BIN/smtpmux-$rev ]] && return 0
	log "building smtpmux at $rev"
	git -C "$REPO" worktree add -q --detach "$src" "$rev" || die "no revision $rev"
	(cd "$src" && go build -o "$BIN/smtpmux-$rev" ./cmd/smtpmux) >"$WORK/build-$rev.log" 2>&1 || die "$rev does not build: $(head -3 "$WORK/build-$rev.log")"
	git -C "$REPO" worktree remove --force "$src"
}

# sample_backlog OUT: every INTERVAL seconds, one line "seconds backlog".
sample_backlog() {
	local t0 v
	t0=$(date +%s)
	while :; do
		v=$(curl -fsS --max-time 5 "http://127.0.0.1:$SMTPMUX_METRICS_PORT/metrics" 2>/dev/null |
			awk '/^smtpmux_history_backlog_messages / {print $2}') || v=""
		echo "$(($(date +%s) - t0)) ${v:-?}"
		sleep "$INTERVAL"
	done >"$1"
}

# one_run NAME REV MOVE_AFTER ROUND: a fresh sink and daemon, the load, one
# JSON line.
one_run() {
	local name=$1 rev=$2 after=$3 round=$4 load backlog
	start_sink
	SMX_NAME=smtpmux-$name-$round
	SMTPMUX_EXTRA=$(printf '[metrics]\nlisten = "127.0.0.1:%s"\n' "$SMTPMUX_METRICS_PORT")
	[[ -z $after ]] || SMTPMUX_EXTRA+=$(printf '\n[retention]\nmove_after = "%s"\n' "$after")
	if ! SMTPMUX_BIN=$BIN/smtpmux-$rev start_smtpmux || ! setup_smtpmux_relay; then
		die "smtpmux ($name) did not start: $SKIP"
	fi
	smtpmux_driver_flags
	sample_backlog "$WORK/backlog-$name-$round.txt" &
	SAMPLER_PID=$!
	log "$name (round $round): $rev${after:+, move_after=$after}, $N × $SIZE B over $C sessions"
	job "$WORK/load-$name-$round.json" timeout "$DRIVER_TIMEOUT" "$BIN/smtpload" -n "$N" -size "$SIZE" -c "$C" \
		-interval "${INTERVAL}s" -run "mover-$name-$round-$$" "${SMX_FLAGS[@]}" 2>>"$WORK/driver.log"
	stop_pid "$SAMPLER_PID"
	SAMPLER_PID=""
	stop_smtpmux
	stop_pid "$SINK_PID"
	SINK_PID=""
	load=$(cat "$WORK/load-$name-$round.json")
	[[ -n $load ]] || die "$name: the driver timed out or crashed"
	backlog=$(awk '{printf "%s[%s,%s]", (NR > 1 ? "," : ""), $1, ($2 == "?" ? "null" : $2)}' "$WORK/backlog-$name-$round.txt")
	jq -c --arg v "$name" --arg rev "$rev" --arg after "$after" --argjson round "$round" --argjson from "$FROM_S" \
		--argjson iv "$INTERVAL" --argjson backlog "[$backlog]" '
		. as $r | ([.windows[] | select(.start_s >= $from and .start_s + $iv <= ($r.elapsed_s | floor))]) as $w |
		{variant: $v, rev: $rev, move_after: $after, round: $round, sent, failed, accepted_per_s, p99_ms, elapsed_s,
		 compared_windows: ($w | length),
		 window_accepted_per_s: (if ($w | length) > 0 then ([$w[].accepted_per_s] | add / length) else null end),
		 window_p99_ms: (if ($w | length) > 0 then ([$w[].p99_ms] | sort | .[length / 2 | floor]) else null end),
		 windows: [.windows[] | [.start_s, (.accepted_per_s | round), .p99_ms]],
		 backlog: $backlog}' <<<"$load" | tee -a "$RUNLOG"
}

require_tools
build_harness
read -r -a specs <<<"$VARIANTS"
for spec in "${specs[@]}"; do
	IFS== read -r _ rev _ <<<"$spec"
	build_rev "$rev"
done
log "N=$N SIZE=$SIZE C=$C ROUNDS=$ROUNDS INTERVAL=${INTERVAL}s FROM_S=$FROM_S VARIANTS=$VARIANTS, $(nproc) cores, work dir $WORK"
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < ${#specs[@]}; i++)); do
		IFS== read -r name rev after <<<"${specs[(i + r - 1) % ${#specs[@]}]}"
		one_run "$name" "$rev" "${after:-}" "$r"
	done
done
jq -sc '
	def med: map(select(. != null)) | sort | if length > 0 then .[length / 2 | floor] else null end;
	(group_by(.variant) | map({variant: .[0].variant, rev: .[0].rev, move_after: .[0].move_after, runs: length,
		accepted_per_s: ([.[].window_accepted_per_s] | med), p99_ms: ([.[].window_p99_ms] | med),
		backlog_end: [.[].backlog[-1][1]]})) as $vs |
	($vs | map(select(.variant == "deferred")) | first) as $base |
	$vs[] | . + (if $base == null or .variant == "deferred" or .accepted_per_s == null or $base.accepted_per_s == null then {} else
		{throughput_cost: (1 - .accepted_per_s / $base.accepted_per_s), p99_cost: (.p99_ms / $base.p99_ms - 1)} end)' "$RUNLOG"
