#!/usr/bin/env bash
# bench/run.sh — smtpmux against Postfix on the same machine, same load.
#
# Runs, in one go: (a) the load driver straight into the counting sink (the
# ceiling of this harness), (b) Postfix as a smarthost relay to the sink, (c)
# smtpmux with an `smtp` provider pointing at the sink. Prints one JSON line
# per system and the smtpmux/Postfix ratios. See bench/README.md.
#
# Parameters (environment): N messages, SIZE bytes, C sessions, RUNS (median
# of), WARMUP messages before the measured runs, SYSTEMS to run. Everything
# listens on 127.0.0.1 only; every wait is bounded; every process started
# here is stopped on exit.
set -euo pipefail

N=${N:-10000}
SIZE=${SIZE:-2048}
C=${C:-20}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-500}
SYSTEMS=${SYSTEMS:-"ceiling postfix smtpmux"}
SINK_PORT=${SINK_PORT:-12525}
SINK_STATUS_PORT=${SINK_STATUS_PORT:-12580}
POSTFIX_PORT=${POSTFIX_PORT:-10025}
POSTFIX_TLS=${POSTFIX_TLS:-0}          # 1: the driver uses STARTTLS into Postfix too
POSTFIX_EXTRA=${POSTFIX_EXTRA:-}       # extra main.cf settings, e.g. "max_use=1000 in_flow_delay=0"
SMTPMUX_PORT=${SMTPMUX_PORT:-10587}
SMTPMUX_HTTP_PORT=${SMTPMUX_HTTP_PORT:-10080}
DRIVER_TIMEOUT=${DRIVER_TIMEOUT:-600}  # seconds, one driver run
WAIT_TIMEOUT=${WAIT_TIMEOUT:-$((120 + N / 100))} # seconds for the queue to drain after the driver
KEEP=${KEEP:-0}                        # 1: keep the work directory (logs, configs, per-run JSON)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/smtpmux-bench.XXXXXX")
chmod 755 "$WORK" # Postfix daemons (user postfix) must traverse it
BIN=$WORK/bin
SINK_HTTP=http://127.0.0.1:$SINK_STATUS_PORT
SINK_PID="" SMX_PID="" MEM_PID="" JOB_PID="" # processes started here, while they run
PF_ETC=""  # Postfix config directory once an instance runs
RUNLOG=$WORK/runs.jsonl

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
	stop_postfix
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

# ---------------------------------------------------------------- setup
for tool in go jq curl timeout; do
	command -v "$tool" >/dev/null || die "$tool is required (apt-get install -y $tool)"
done
for p in $SINK_PORT $SINK_STATUS_PORT; do port_free "$p" || die "port $p is in use (set SINK_PORT/SINK_STATUS_PORT)"; done

log "building the harness"
(cd "$REPO" && go build -o "$BIN/" ./bench/cmd/smtpload ./bench/cmd/smtpsink ./bench/cmd/procmem)

"$BIN/smtpsink" -addr "127.0.0.1:$SINK_PORT" -status-addr "127.0.0.1:$SINK_STATUS_PORT" 2>"$WORK/sink.log" &
SINK_PID=$!
wait_port "$SINK_STATUS_PORT" 10 || die "sink did not start: $(cat "$WORK/sink.log")"

# cpu_busy: busy CPU seconds of the whole machine so far (all cores).
cpu_busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{print ($2+$3+$4+$7+$8)/hz; exit}' /proc/stat; }

# measure SYSTEM LABEL ROOTPID DRIVER-FLAGS...: one run; appends a JSON line
# to $RUNLOG when LABEL is a run number (warm-up runs are not recorded).
# ROOTPID is the relay process whose tree is sampled for memory (0: none).
measure() {
	local sys=$1 label=$2 root=$3 n=$N
	shift 3
	[[ $label == warmup ]] && n=$WARMUP
	curl -fsS -X POST "$SINK_HTTP/reset" >/dev/null
	local mem='{}' load sink cpu0 cpu1 sent
	if [[ $root != 0 ]]; then
		"$BIN/procmem" -pid "$root" >"$WORK/mem.json" &
		MEM_PID=$!
	fi
	cpu0=$(cpu_busy)
	job "$WORK/load.json" timeout "$DRIVER_TIMEOUT" "$BIN/smtpload" -n "$n" -size "$SIZE" -c "$C" -run "$sys-$label-$$" "$@" 2>>"$WORK/driver.log"
	load=$(cat "$WORK/load.json")
	[[ -n $load ]] || load='{"sent":0,"failed":'"$n"',"first_error":"driver timed out or crashed"}'
	sent=$(jq -r '.sent' <<<"$load")
	job "$WORK/sink.json" curl -sS --max-time $((WAIT_TIMEOUT + 10)) "$SINK_HTTP/wait?n=$sent&timeout=${WAIT_TIMEOUT}s"
	sink=$(cat "$WORK/sink.json")
	[[ -n $sink ]] || sink=$(curl -sS "$SINK_HTTP/status")
	cpu1=$(cpu_busy)
	if [[ -n $MEM_PID ]]; then
		stop_pid "$MEM_PID"
		wait "$MEM_PID" 2>/dev/null || true
		MEM_PID=""
		mem=$(cat "$WORK/mem.json")
		[[ -n $mem ]] || mem='{}'
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

# run_system SYSTEM ROOTPID DRIVER-FLAGS...: warm-up, RUNS runs, summary.
run_system() {
	local sys=$1 root=$2 i
	shift 2
	if ((WARMUP > 0)); then
		log "$sys: warm-up ($WARMUP messages)"
		measure "$sys" warmup "$root" "$@"
	fi
	for ((i = 1; i <= RUNS; i++)); do
		log "$sys: run $i/$RUNS (N=$N SIZE=$SIZE C=$C)"
		measure "$sys" "$i" "$root" "$@"
	done
	summarize "$sys" | tee "$WORK/$sys.json"
}

# ---------------------------------------------------------------- (a) ceiling
run_ceiling() {
	run_system ceiling 0 -addr "127.0.0.1:$SINK_PORT"
}

# ---------------------------------------------------------------- (b) Postfix
stop_postfix() {
	[[ -n $PF_ETC ]] || return 0
	local pid
	pid=$(tr -d ' \n' <"$WORK/postfix/queue/pid/master.pid" 2>/dev/null || true)
	postfix -c "$PF_ETC" stop >/dev/null 2>&1 || true
	[[ -n $pid ]] && stop_pid "$pid" # master takes its children down with it
	PF_ETC=""
}

run_postfix() {
	if ! command -v postfix >/dev/null && ((EUID == 0)) && command -v apt-get >/dev/null; then
		log "postfix: installing from Debian (no system instance is configured)"
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
		DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >"$WORK/apt.log" 2>&1 ||
			log "postfix: apt-get install failed, see $WORK/apt.log"
	fi
	if ! command -v postfix >/dev/null; then
		log "postfix: skipped — not installed"
		jq -nc '{system: "postfix", skipped: "postfix is not installed"}'
		return 0
	fi
	if ((EUID != 0)); then
		log "postfix: skipped — a private Postfix instance must be started as root"
		jq -nc '{system: "postfix", skipped: "needs root"}'
		return 0
	fi
	port_free "$POSTFIX_PORT" || die "port $POSTFIX_PORT is in use (set POSTFIX_PORT)"
	local pf=$WORK/postfix
	mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
	chown postfix "$pf/data"
	# A private instance: own config, queue and data directories (the master
	# lock lives in data_directory), loopback only, no local delivery.
	cat >"$pf/etc/main.cf" <<-EOF
		compatibility_level = 3.6
		queue_directory = $pf/queue
		data_directory = $pf/data
		mail_owner = postfix
		setgid_group = postdrop
		myhostname = bench-relay.localdomain
		mydomain = localdomain
		myorigin = \$myhostname
		mydestination =
		local_recipient_maps =
		local_transport = error:local delivery is disabled
		alias_maps =
		alias_database =
		relay_domains =
		relayhost = [127.0.0.1]:$SINK_PORT
		mynetworks = 127.0.0.0/8
		inet_interfaces = loopback-only
		inet_protocols = ipv4
		smtpd_relay_restrictions = permit_mynetworks, reject
		smtpd_peername_lookup = no
		smtp_tls_security_level = none
		smtpd_tls_security_level = none
		message_size_limit = 52428800
		default_destination_concurrency_limit = $C
		biff = no
		append_dot_mydomain = no
		maillog_file_prefixes = $pf
		maillog_file = $pf/maillog
	EOF
	# The stock master.cf minus the pipe transports, with no chroot (a chroot
	# would need copies of /etc files inside the temporary queue directory)
	# and smtpd listening on the benchmark port only.
	cat >"$pf/etc/master.cf" <<-EOF
		127.0.0.1:$POSTFIX_PORT inet n - n - - smtpd
		pickup    unix  n       -       n       60      1       pickup
		cleanup   unix  n       -       n       -       0       cleanup
		qmgr      unix  n       -       n       300     1       qmgr
		tlsmgr    unix  -       -       n       1000?   1       tlsmgr
		rewrite   unix  -       -       n       -       -       trivial-rewrite
		bounce    unix  -       -       n       -       0       bounce
		defer     unix  -       -       n       -       0       bounce
		trace     unix  -       -       n       -       0       bounce
		verify    unix  -       -       n       -       1       verify
		flush     unix  n       -       n       1000?   0       flush
		proxymap  unix  -       -       n       -       -       proxymap
		proxywrite unix -       -       n       -       1       proxymap
		smtp      unix  -       -       n       -       -       smtp
		relay     unix  -       -       n       -       -       smtp
		showq     unix  n       -       n       -       -       showq
		error     unix  -       -       n       -       -       error
		retry     unix  -       -       n       -       -       error
		discard   unix  -       -       n       -       -       discard
		local     unix  -       n       n       -       -       local
		virtual   unix  -       n       n       -       -       virtual
		lmtp      unix  -       -       n       -       -       lmtp
		anvil     unix  -       -       n       -       1       anvil
		scache    unix  -       -       n       -       1       scache
		postlog   unix-dgram n  -       n       -       1       postlogd
	EOF
	local flags=(-addr "127.0.0.1:$POSTFIX_PORT")
	if [[ $POSTFIX_TLS == 1 ]]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
			-keyout "$pf/etc/key.pem" -out "$pf/etc/cert.pem" 2>/dev/null
		postconf -c "$pf/etc" -e smtpd_tls_security_level=may \
			"smtpd_tls_cert_file=$pf/etc/cert.pem" "smtpd_tls_key_file=$pf/etc/key.pem"
		flags+=(-starttls -insecure)
	fi
	# shellcheck disable=SC2086 # word splitting wanted: one setting per word
	[[ -z $POSTFIX_EXTRA ]] || postconf -c "$pf/etc" -e $POSTFIX_EXTRA
	postfix -c "$pf/etc" check >"$WORK/postfix-check.log" 2>&1 || die "postfix check failed: $(cat "$WORK/postfix-check.log")"
	PF_ETC=$pf/etc
	postfix -c "$pf/etc" start >"$WORK/postfix-start.log" 2>&1 || die "postfix start failed: $(cat "$WORK/postfix-start.log")"
	wait_port "$POSTFIX_PORT" 20 || die "postfix does not listen on $POSTFIX_PORT: $(tail -5 "$pf/maillog")"
	local master
	master=$(tr -d ' \n' <"$pf/queue/pid/master.pid")
	log "postfix: private instance up (master pid $master, config $pf/etc, log $pf/maillog)"
	run_system postfix "$master" "${flags[@]}"
	stop_postfix
}

# ---------------------------------------------------------------- (c) smtpmux
# api METHOD PATH [JSON]: one Management API call; prints the body; fails
# unless the reply is {"ok":true,…}.
api() {
	local body data=()
	[[ $# -lt 3 ]] || data=(-d "$3")
	body=$(curl -sS --max-time 10 -X "$1" -H "Authorization: Bearer $SMX_ROOT" \
		-H 'Content-Type: application/json' "${data[@]}" "http://127.0.0.1:$SMTPMUX_HTTP_PORT$2") || return 1
	jq -e '.ok == true' <<<"$body" >/dev/null || {
		log "smtpmux: $1 $2 failed: $body"
		return 1
	}
	printf '%s\n' "$body"
}

run_smtpmux() {
	local smx=$WORK/smtpmux
	mkdir -p "$smx/data"
	if [[ ! -d $REPO/cmd/smtpmux ]] ||
		! (cd "$REPO" && go build -o "$BIN/smtpmux" ./cmd/smtpmux) >"$WORK/smtpmux-build.log" 2>&1; then
		log "smtpmux: skipped — ./cmd/smtpmux does not build yet: $(head -3 "$WORK/smtpmux-build.log" 2>/dev/null)"
		jq -nc '{system: "smtpmux", skipped: "./cmd/smtpmux does not build yet"}'
		return 0
	fi
	for p in $SMTPMUX_PORT $SMTPMUX_HTTP_PORT; do port_free "$p" || die "port $p is in use (set SMTPMUX_PORT/SMTPMUX_HTTP_PORT)"; done
	SMX_ROOT=smx_root_$(od -An -tx1 -N22 /dev/urandom | tr -d ' \n')
	cat >"$smx/smtpmux.toml" <<-EOF
		data_dir = "$smx/data"
		hostname = "bench-smtpmux.localdomain"
		bootstrap_root_key = "$SMX_ROOT"
		[smtp]
		listen = ["127.0.0.1:$SMTPMUX_PORT"]
		allow_insecure_auth = true
		[http]
		listen = "127.0.0.1:$SMTPMUX_HTTP_PORT"
		[managed]
		outbox_dir = "$smx/data/outbox"
		[limits]
		# One bench key sends far more than the 1,800/min a tenant key may.
		sends_per_minute = 100000000
	EOF
	(cd "$smx" && exec "$BIN/smtpmux" serve --config "$smx/smtpmux.toml") >"$smx/smtpmux.log" 2>&1 &
	SMX_PID=$!
	if ! wait_port "$SMTPMUX_HTTP_PORT" 30 || ! wait_port "$SMTPMUX_PORT" 10; then
		log "smtpmux: skipped — did not start: $(tail -5 "$smx/smtpmux.log")"
		jq -nc '{system: "smtpmux", skipped: "did not start"}'
		stop_smtpmux
		return 0
	fi
	local providers shared key id
	if ! api POST /api/v1/providers '{"name":"sink","type":"smtp","smtp_host":"127.0.0.1","smtp_port":'"$SINK_PORT"',"smtp_protocol":"none"}' >/dev/null ||
		! providers=$(api GET /api/v1/providers) ||
		! key=$(api POST /api/v1/api-keys '{"name":"bench","type":"sending"}' | jq -er '.data.key'); then
		log "smtpmux: skipped — Management API set-up failed (log: $smx/smtpmux.log)"
		jq -nc '{system: "smtpmux", skipped: "Management API set-up failed"}'
		stop_smtpmux
		return 0
	fi
	# Deactivate the managed account so that every message goes to the sink.
	shared=$(jq -r '[.. | objects | select(.is_shared == true) | .id] | unique | .[]' <<<"$providers")
	for id in $shared; do api POST "/api/v1/providers/$id/deactivate" >/dev/null || true; done
	log "smtpmux: up (pid $SMX_PID, config $smx/smtpmux.toml)"
	run_system smtpmux "$SMX_PID" -addr "127.0.0.1:$SMTPMUX_PORT" -starttls -insecure -auth-user bench -auth-pass "$key"
	stop_smtpmux
}

stop_smtpmux() {
	[[ -z $SMX_PID ]] || stop_pid "$SMX_PID"
	wait "$SMX_PID" 2>/dev/null || true
	SMX_PID=""
}

# ---------------------------------------------------------------- main
log "N=$N SIZE=$SIZE C=$C RUNS=$RUNS WARMUP=$WARMUP, $(nproc) cores, work dir $WORK"
: >"$RUNLOG"
for sys in $SYSTEMS; do
	case $sys in
	ceiling) run_ceiling ;;
	postfix) run_postfix ;;
	smtpmux) run_smtpmux ;;
	*) die "unknown system $sys (ceiling, postfix, smtpmux)" ;;
	esac
done

# The ratio line, when both relays produced figures.
if [[ -s $WORK/postfix.json && -s $WORK/smtpmux.json ]]; then
	jq -sc '.[0] as $p | .[1] as $m |
		def ratio(f): if ($p[f] // 0) == 0 or $m[f] == null then null else ($m[f] / $p[f] * 100 | round) / 100 end;
		{ratio: "smtpmux/postfix", size: $m.size,
		 accepted_per_s: ratio("accepted_per_s"), delivered_per_s: ratio("delivered_per_s"),
		 p50_ms: ratio("p50_ms"), p99_ms: ratio("p99_ms"), peak_rss_mb: ratio("peak_rss_mb"), peak_pss_mb: ratio("peak_pss_mb")} |
		.targets = {
			delivered: (if .size <= 10240 then ">= 3" else ">= 2" end),
			delivered_met: (.delivered_per_s != null and .delivered_per_s >= (if .size <= 10240 then 3 else 2 end)),
			p99: "<= 0.5", p99_met: (.p99_ms != null and .p99_ms <= 0.5),
			smtpmux_rss_mb: "<= 150", smtpmux_rss_met: (($m.peak_rss_mb // 1e9) <= 150)}' \
		"$WORK/postfix.json" "$WORK/smtpmux.json"
fi
