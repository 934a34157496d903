# bench/lib.sh — shell shared by bench/run.sh and bench/queued.sh; sourced,
# not run. The caller sets N, SIZE, C, WARMUP, the ports, WAIT_TIMEOUT,
# DRIVER_TIMEOUT and KEEP before sourcing it; this file sets up the work
# directory, the process bookkeeping and the exit trap, and provides the
# set-up of the sink and of smtpmux, one measured driver run (measure) and
# the per-system summary (summarize).
#
# Every process started through these functions is recorded in a variable
# (SINK_PID, SMX_PID, MEM_PID, JOB_PID) and stopped by the exit trap; a
# caller with processes of its own defines cleanup_extra.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/smtpmux-bench.XXXXXX")
chmod 755 "$WORK" # Postfix daemons (user postfix) must traverse it
BIN=$WORK/bin
SINK_HTTP=http://127.0.0.1:$SINK_STATUS_PORT
SINK_PID="" SMX_PID="" MEM_PID="" JOB_PID="" # processes started here, while they run
RUNLOG=$WORK/runs.jsonl
: >"$RUNLOG"

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# stop_pid PID: SIGTERM, up to 15 s, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	set +e
	for pid in $JOB_PID $MEM_PID $SMX_PID; do stop_pid "$pid"; done
	declare -F cleanup_extra >/dev/null && cleanup_extra
	[[ -z $SINK_PID ]] || stop_pid "$SINK_PID"
	wait 2>/dev/null
	if [[ $KEEP == 1 ]]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_port PORT SECONDS: until something accepts on 127.0.0.1:PORT.
wait_port() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_idle SECONDS: until the daemon has written (store commits, log
# lines) less than 4 KiB a second for 3 s: the scheduler has looked at
# every queued message and has nothing due. (The Go runtime's timer
# wake-ups write a few bytes now and then.) It watches /proc, not
# /metrics: a scrape reads the store's due index (queue depth), which maps
# pages of the store file into the daemon and would inflate the RSS being
# measured.
wait_idle() {
	local last=-1 quiet=0 w i
	for ((i = 0; i < $1; i++)); do
		w=$(awk '/^wchar:/ {print $2}' "/proc/$SMX_PID/io")
		if ((last >= 0 && w - last < 4096)); then
			((++quiet >= 3)) && return 0
		else
			quiet=0
		fi
		last=$w
		sleep 1
	done
	return 1
}

# job OUT CMD...: runs CMD with stdout to OUT in the background and waits for
# it, so that a signal to this script is acted on at once (bash defers traps
# until a foreground command ends).
job() {
	local out=$1
	shift
	"$@" >"$out" &
	JOB_PID=$!
	wait "$JOB_PID" || true
	JOB_PID=""
}

# cpu_busy: busy CPU seconds of the whole machine so far (all cores).
cpu_busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{print ($2+$3+$4+$7+$8)/hz; exit}' /proc/stat; }

require_tools() {
	for tool in go jq curl timeout; do
		command -v "$tool" >/dev/null || die "$tool is required (apt-get install -y $tool)"
	done
	local p
	for p in $SINK_PORT $SINK_STATUS_PORT; do port_free "$p" || die "port $p is in use (set SINK_PORT/SINK_STATUS_PORT)"; done
}

build_harness() {
	log "building the harness"
	(cd "$REPO" && go build -o "$BIN/" ./bench/cmd/smtpload ./bench/cmd/smtpsink ./bench/cmd/procmem)
}

# start_sink: the counting sink on $SINK_PORT, status on $SINK_STATUS_PORT.
start_sink() {
	"$BIN/smtpsink" -addr "127.0.0.1:$SINK_PORT" -status-addr "127.0.0.1:$SINK_STATUS_PORT" 2>>"$WORK/sink.log" &
	SINK_PID=$!
	wait_port "$SINK_STATUS_PORT" 10 || die "sink did not start: $(cat "$WORK/sink.log")"
}

# start_mem ROOTPID OUT: samples ROOTPID's process tree until stop_mem.
start_mem() {
	"$BIN/procmem" -pid "$1" >"$2" &
	MEM_PID=$!
}

# stop_mem OUT: stops the sampler and sets MEM_JSON to its figures ({} if
# it had none). Not to be run in a subshell: MEM_PID must be cleared here.
stop_mem() {
	MEM_JSON=""
	if [[ -n $MEM_PID ]]; then
		stop_pid "$MEM_PID"
		wait "$MEM_PID" 2>/dev/null || true
		MEM_PID=""
		MEM_JSON=$(cat "$1")
	fi
	[[ -n $MEM_JSON ]] || MEM_JSON='{}'
}

# measure SYSTEM LABEL ROOTPID DRIVER-FLAGS...: one run; appends a JSON line
# to $RUNLOG when LABEL is a run number (warm-up runs are not recorded).
# ROOTPID is the relay process whose tree is sampled for memory (0: none).
measure() {
	local sys=$1 label=$2 root=$3 n=$N
	shift 3
	[[ $label == warmup ]] && n=$WARMUP
	curl -fsS -X POST "$SINK_HTTP/reset" >/dev/null
	local mem='{}' load sink cpu0 cpu1 sent
	[[ $root == 0 ]] || start_mem "$root" "$WORK/mem.json"
	cpu0=$(cpu_busy)
	job "$WORK/load.json" timeout "$DRIVER_TIMEOUT" "$BIN/smtpload" -n "$n" -size "$SIZE" -c "$C" -run "$sys-$label-$$" "$@" 2>>"$WORK/driver.log"
	load=$(cat "$WORK/load.json")
	[[ -n $load ]] || load='{"sent":0,"failed":'"$n"',"first_error":"driver timed out or crashed"}'
	sent=$(jq -r '.sent' <<<"$load")
	job "$WORK/sink.json" curl -sS --max-time $((WAIT_TIMEOUT + 10)) "$SINK_HTTP/wait?n=$sent&timeout=${WAIT_TIMEOUT}s"
	sink=$(cat "$WORK/sink.json")
	[[ -n $sink ]] || sink=$(curl -sS "$SINK_HTTP/status")
	cpu1=$(cpu_busy)
	if [[ $root != 0 ]]; then
		stop_mem "$WORK/mem.json"
		mem=$MEM_JSON
	fi
	[[ $label == warmup ]] && return 0
	jq -nc --arg system "$sys" --argjson run "$label" --argjson load "$load" --argjson sink "$sink" \
		--argjson mem "$mem" --argjson cpu "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{print b-a}')" '{
		system: $system, run: $run, n: '"$N"', size: '"$SIZE"', c: '"$C"',
		sent: $load.sent, failed: $load.failed,
		accepted_per_s: $load.accepted_per_s,
		delivered: $sink.unique,
		delivered_per_s: (if ($sink.last_unix_ns // 0) > 0 and $load.start_unix_ns != null
			then $sink.unique / (($sink.last_unix_ns - $load.start_unix_ns) / 1e9) else 0 end),
		p50_ms: $load.p50_ms, p99_ms: $load.p99_ms,
		peak_rss_mb: $mem.peak_rss_mb, peak_pss_mb: $mem.peak_pss_mb, peak_procs: $mem.peak_procs,
		bad_checksum: $sink.bad_checksum, duplicates: $sink.duplicates,
		incomplete: ($sink.timed_out // false),
		relay_cpu_s: $mem.cpu_s, driver_cpu_s: $load.cpu_s, sink_cpu_s: $sink.cpu_s, machine_cpu_s: $cpu,
		first_error: $load.first_error} |
		.other_cpu_s = (if .driver_cpu_s == null then null else
			((.machine_cpu_s - (.relay_cpu_s // 0) - .driver_cpu_s - .sink_cpu_s) * 100 | round) / 100 end)' | tee -a "$RUNLOG" | sed 's/^/bench: run /' >&2
}

# summarize SYSTEM: the per-system JSON line (medians over the runs).
summarize() {
	jq -sc --arg sys "$1" '
		def median: map(select(. != null)) | sort |
			if length == 0 then null
			elif length % 2 == 1 then .[(length - 1) / 2]
			else (.[length / 2 - 1] + .[length / 2]) / 2 end;
		def r1: if . == null then null else (. * 10 | round) / 10 end;
		def r2: if . == null then null else (. * 100 | round) / 100 end;
		map(select(.system == $sys)) as $r |
		{system: $sys, n: $r[0].n, size: $r[0].size, c: $r[0].c, runs: ($r | length),
		 accepted_per_s: ($r | map(.accepted_per_s) | median | r1),
		 delivered_per_s: ($r | map(.delivered_per_s) | median | r1),
		 p50_ms: ($r | map(.p50_ms) | median | r2),
		 p99_ms: ($r | map(.p99_ms) | median | r2),
		 peak_rss_mb: ($r | map(.peak_rss_mb) | median | r1),
		 peak_pss_mb: ($r | map(.peak_pss_mb) | median | r1),
		 relay_cpu_s: ($r | map(.relay_cpu_s) | median | r2),
		 other_cpu_s: ($r | map(.other_cpu_s) | median | r2),
		 failed: ($r | map(.failed) | add), bad_checksum: ($r | map(.bad_checksum) | add),
		 duplicates: ($r | map(.duplicates) | add),
		 incomplete_runs: ($r | map(select(.incomplete)) | length)}' "$RUNLOG"
}

# ---------------------------------------------------------------- smtpmux
# api METHOD PATH [JSON]: one Management API call; prints the body; fails
# unless the reply is {"ok":true,…}.
api() {
	local body data=()
	[[ $# -lt 3 ]] || data=(-d "$3")
	body=$(curl -sS --max-time 30 -X "$1" -H "Authorization: Bearer $SMX_ROOT" \
		-H 'Content-Type: application/json' "${data[@]}" "http://127.0.0.1:$SMTPMUX_HTTP_PORT$2") || return 1
	jq -e '.ok == true' <<<"$body" >/dev/null || {
		log "smtpmux: $1 $2 failed: $body"
		return 1
	}
	printf '%s\n' "$body"
}

# start_smtpmux: builds ./cmd/smtpmux and starts it on a fresh data
# directory under $WORK/${SMX_NAME:-smtpmux}; sets SMX_DIR, SMX_PID and
# SMX_ROOT. Returns 1 with a SKIP reason when it does not build or start.
SKIP=""
start_smtpmux() {
	SMX_DIR=$WORK/${SMX_NAME:-smtpmux}
	local smx=$SMX_DIR
	mkdir -p "$smx/data"
	if [[ ! -d $REPO/cmd/smtpmux ]] ||
		! (cd "$REPO" && go build -o "$BIN/smtpmux" ./cmd/smtpmux) >"$WORK/smtpmux-build.log" 2>&1; then
		log "smtpmux: ./cmd/smtpmux does not build: $(head -3 "$WORK/smtpmux-build.log" 2>/dev/null)"
		SKIP="./cmd/smtpmux does not build yet"
		return 1
	fi
	local p
	for p in $SMTPMUX_PORT $SMTPMUX_HTTP_PORT; do port_free "$p" || die "port $p is in use (set SMTPMUX_PORT/SMTPMUX_HTTP_PORT)"; done
	SMX_ROOT=smx_root_$(od -An -tx1 -N22 /dev/urandom | tr -d ' \n')
	cat >"$smx/smtpmux.toml" <<-EOF
		data_dir = "$smx/data"
		hostname = "bench-smtpmux.localdomain"
		log_level = "${SMTPMUX_LOG_LEVEL:-info}"
		bootstrap_root_key = "$SMX_ROOT"
		[smtp]
		listen = ["127.0.0.1:$SMTPMUX_PORT"]
		allow_insecure_auth = true
		[http]
		listen = "127.0.0.1:$SMTPMUX_HTTP_PORT"
		${SMTPMUX_HTTP_EXTRA:-}
		[managed]
		outbox_dir = "$smx/data/outbox"
		[providers]
		# The sink listens on 127.0.0.1, an internal address.
		allow_private_hosts = true
		[limits]
		# One bench key sends far more than the 1,800/min a tenant key may.
		sends_per_minute = 100000000
		${SMTPMUX_EXTRA:-}
	EOF
	(cd "$smx" && exec "$BIN/smtpmux" serve --config "$smx/smtpmux.toml") >"$smx/smtpmux.log" 2>&1 &
	SMX_PID=$!
	if ! wait_port "$SMTPMUX_HTTP_PORT" 30 || ! wait_port "$SMTPMUX_PORT" 10; then
		log "smtpmux: did not start: $(tail -5 "$smx/smtpmux.log")"
		SKIP="did not start"
		stop_smtpmux
		return 1
	fi
}

# setup_smtpmux_relay: through the Management API, an `smtp` provider
# pointing at the sink's address (whether the sink runs or not), the
# managed account deactivated so that every message goes there, and a
# sending key. Sets SMX_PROVIDER and SMX_KEY.
setup_smtpmux_relay() {
	local providers shared id quotas=""
	# PROVIDER_QUOTAS (a JSON object, e.g. '{"per_minute":100000}'): caps on
	# the bench providers, so that the quota path (and in cluster mode its
	# etcd writes) is measured too.
	[[ -z ${PROVIDER_QUOTAS:-} ]] || quotas=',"quotas":'"$PROVIDER_QUOTAS"
	if ! SMX_PROVIDER=$(api POST /api/v1/providers '{"name":"sink","type":"smtp","smtp_host":"127.0.0.1","smtp_port":'"$SINK_PORT"',"smtp_protocol":"none"'"$quotas"'}' | jq -er '.data.id') ||
		! providers=$(api GET /api/v1/providers) ||
		! SMX_KEY=$(api POST /api/v1/api-keys '{"name":"bench","type":"sending"}' | jq -er '.data.key'); then
		log "smtpmux: Management API set-up failed (log: $SMX_DIR/smtpmux.log)"
		SKIP="Management API set-up failed"
		return 1
	fi
	shared=$(jq -r '[.. | objects | select(.is_shared == true) | .id] | unique | .[]' <<<"$providers")
	for id in $shared; do api POST "/api/v1/providers/$id/deactivate" >/dev/null || true; done
	# PROVIDERS > 1: as many `smtp` providers in the key's scope, all to
	# the sink (issue 18: routing among many providers, pools spread).
	local i
	for ((i = 2; i <= ${PROVIDERS:-1}; i++)); do
		api POST /api/v1/providers '{"name":"sink'"$i"'","type":"smtp","smtp_host":"127.0.0.1","smtp_port":'"$SINK_PORT"',"smtp_protocol":"none"'"$quotas"'}' >/dev/null ||
			{ log "smtpmux: creating provider $i failed"; SKIP="provider set-up failed"; return 1; }
	done
	log "smtpmux: up (pid $SMX_PID, config $SMX_DIR/smtpmux.toml, ${PROVIDERS:-1} provider(s))"
}

# smtpmux_driver_flags: the driver's flags for smtpmux (STARTTLS + AUTH PLAIN
# with the sending key).
smtpmux_driver_flags() {
	SMX_FLAGS=(-addr "127.0.0.1:$SMTPMUX_PORT" -starttls -insecure -auth-user bench -auth-pass "$SMX_KEY")
}

# smtpmux_or_skip SYSTEM: start_smtpmux, setup_smtpmux_relay and the
# driver's flags; if smtpmux does not start, prints SYSTEM's skipped line
# and exits 0 (a benchmark of one system has nothing else to run).
smtpmux_or_skip() {
	if ! start_smtpmux || ! setup_smtpmux_relay; then
		jq -nc --arg system "$1" --arg why "$SKIP" '{system: $system, skipped: $why}'
		exit 0
	fi
	smtpmux_driver_flags
}

stop_smtpmux() {
	[[ -z $SMX_PID ]] || stop_pid "$SMX_PID"
	wait "$SMX_PID" 2>/dev/null || true
	SMX_PID=""
}
