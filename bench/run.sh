#!/usr/bin/env bash
# bench/run.sh — smtpmux against Postfix on the same machine, same load.
#
# Runs, in one go: (a) the load driver straight into the counting sink (the
# ceiling of this harness), (b) Postfix as a smarthost relay to the sink, (c)
# maddy (the nearest Go peer) relaying through its durable queue to the
# sink, (d) smtpmux with an `smtp` provider pointing at the sink. Prints one
# JSON line per system and the smtpmux/Postfix and smtpmux/maddy ratios.
# See bench/README.md.
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
SYSTEMS=${SYSTEMS:-"ceiling postfix maddy smtpmux"}
SINK_PORT=${SINK_PORT:-12525}
SINK_STATUS_PORT=${SINK_STATUS_PORT:-12580}
POSTFIX_PORT=${POSTFIX_PORT:-10025}
POSTFIX_TLS=${POSTFIX_TLS:-0}          # 1: the driver uses STARTTLS into Postfix too
POSTFIX_EXTRA=${POSTFIX_EXTRA:-}       # extra main.cf settings, e.g. "max_use=1000 in_flow_delay=0"
MADDY_PORT=${MADDY_PORT:-10026}
SMTPMUX_PORT=${SMTPMUX_PORT:-10587}
SMTPMUX_HTTP_PORT=${SMTPMUX_HTTP_PORT:-10080}
DRIVER_TIMEOUT=${DRIVER_TIMEOUT:-600}  # seconds, one driver run
WAIT_TIMEOUT=${WAIT_TIMEOUT:-$((120 + N / 100))} # seconds for the queue to drain after the driver
KEEP=${KEEP:-0}                        # 1: keep the work directory (logs, configs, per-run JSON)
ETCD_PORT=${ETCD_PORT:-12379}          # smtpmux-etcd: the single etcd member's client port
ETCD_PEER_PORT=${ETCD_PEER_PORT:-12381}
SMTPMUX_METRICS_PORT=${SMTPMUX_METRICS_PORT:-19464} # smtpmux-etcd: the node's /metrics

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PF_ETC=""     # Postfix config directory once an instance runs
MADDY_PID=""  # maddy while it runs
ETCD_PID=""   # etcd while smtpmux-etcd runs
cleanup_extra() {
	stop_postfix
	stop_maddy
	stop_etcd
}

# ---------------------------------------------------------------- setup
require_tools
build_harness
start_sink

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

# ---------------------------------------------------------------- (c) maddy
# maddy v0.8.1, built from its Go module pinned in bench/peers/maddy (a
# module of its own, so its dependencies stay out of smtpmux's go.mod).
stop_maddy() {
	[[ -z $MADDY_PID ]] || stop_pid "$MADDY_PID"
	MADDY_PID=""
}

run_maddy() {
	local md=$WORK/maddy
	mkdir -p "$md/state" "$md/run"
	if ! (cd "$REPO/bench/peers/maddy" && go build -o "$BIN/maddy" github.com/foxcpp/maddy/cmd/maddy) >"$WORK/maddy-build.log" 2>&1; then
		log "maddy: skipped — it does not build: $(tail -3 "$WORK/maddy-build.log")"
		jq -nc '{system: "maddy", skipped: "does not build (see bench/peers/maddy)"}'
		return 0
	fi
	port_free "$MADDY_PORT" || die "port $MADDY_PORT is in use (set MADDY_PORT)"
	# A private smarthost relay, as Postfix is set up: plain SMTP from the
	# driver (no TLS, no AUTH: the example's "default_source" takes mail
	# from anyone), every message through maddy's durable queue (files
	# fsync'd before the 250) to the sink, up to C deliveries at once.
	# DMARC is off: it looks up DNS, and the network here is closed.
	cat >"$md/maddy.conf" <<-EOF
		state_dir $md/state
		runtime_dir $md/run
		hostname bench-maddy.localdomain
		tls off
		log $md/maddy.log

		target.smtp sink {
		    targets tcp://127.0.0.1:$SINK_PORT
		    starttls no
		}

		target.queue relay_queue {
		    target &sink
		    max_parallelism $C
		}

		smtp tcp://127.0.0.1:$MADDY_PORT {
		    dmarc no
		    defer_sender_reject no
		    max_message_size 50M
		    default_source {
		        deliver_to &relay_queue
		    }
		}
	EOF
	"$BIN/maddy" --config "$md/maddy.conf" run >"$md/stderr.log" 2>&1 &
	MADDY_PID=$!
	wait_port "$MADDY_PORT" 20 || die "maddy does not listen on $MADDY_PORT: $(tail -5 "$md/stderr.log" "$md/maddy.log" 2>/dev/null)"
	log "maddy: private instance up (pid $MADDY_PID, config $md/maddy.conf, log $md/maddy.log)"
	run_system maddy "$MADDY_PID" -addr "127.0.0.1:$MADDY_PORT"
	stop_maddy
}

# ---------------------------------------------------------------- (d) smtpmux
run_smtpmux() {
	if ! start_smtpmux || ! setup_smtpmux_relay; then
		log "smtpmux: skipped — $SKIP"
		jq -nc --arg why "$SKIP" '{system: "smtpmux", skipped: $why}'
		stop_smtpmux
		return 0
	fi
	smtpmux_driver_flags
	run_system smtpmux "$SMX_PID" "${SMX_FLAGS[@]}"
	stop_smtpmux
}

# ---------------------------------------------------------------- (e) smtpmux on etcd
# The same smtpmux, same config, as one node in cluster mode on a local
# single-member etcd (the real binary: .peers/bin/etcd from
# scripts/install-test-peers.sh, or SMTPMUX_ETCD, or etcd on PATH): the
# state of record and the quotas in etcd, messages in the node's bbolt
# file as always. Its summary line adds etcd's CPU and, from the two
# daemons' /metrics, the quota's etcd writes and etcd's committed
# proposals per delivered message (warm-up included). With
# PROVIDER_QUOTAS='{"per_minute":…}' the bench provider has caps.
stop_etcd() {
	[[ -z $ETCD_PID ]] || stop_pid "$ETCD_PID"
	ETCD_PID=""
}

etcd_bin() {
	local p
	for p in "${SMTPMUX_ETCD:-}" "$REPO/.peers/bin/etcd" "$(command -v etcd || true)"; do
		[[ -n $p && -x $p ]] && { echo "$p"; return 0; }
	done
	return 1
}

# metric URL NAME: the value of an unlabelled Prometheus sample (0 if absent).
metric() {
	curl -fsS --max-time 10 "$1" | awk -v m="$2" '$1 == m { v = $2 } END { printf "%d\n", v + 0 }'
}

run_smtpmux_etcd() {
	local sys=smtpmux-etcd bin ed=$WORK/etcd i
	if ! bin=$(etcd_bin); then
		log "$sys: skipped — no etcd binary (run scripts/install-test-peers.sh or set SMTPMUX_ETCD)"
		jq -nc --arg s "$sys" '{system: $s, skipped: "no etcd binary"}'
		return 0
	fi
	for p in $ETCD_PORT $ETCD_PEER_PORT $SMTPMUX_METRICS_PORT; do port_free "$p" || die "port $p is in use (set ETCD_PORT/ETCD_PEER_PORT/SMTPMUX_METRICS_PORT)"; done
	mkdir -p "$ed"
	"$bin" --name bench --data-dir "$ed/data" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "bench=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
		--log-level warn >"$ed/etcd.log" 2>&1 &
	ETCD_PID=$!
	for ((i = 0; i < 200; i++)); do
		curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | jq -e '.health == "true"' >/dev/null 2>&1 && break
		sleep 0.1
	done
	((i < 200)) || die "etcd did not become healthy: $(tail -5 "$ed/etcd.log")"
	log "$sys: etcd up (pid $ETCD_PID, $bin, client 127.0.0.1:$ETCD_PORT)"
	local cluster
	# advertise_url: a cluster node must say where the others reach its
	# API (one node here: never called, but required).
	cluster=$(printf '\n[metrics]\nlisten = "127.0.0.1:%s"\n[cluster]\netcd_endpoints = ["http://127.0.0.1:%s"]\nnode_id = "bench"\nadvertise_url = "http://127.0.0.1:%s"\n' \
		"$SMTPMUX_METRICS_PORT" "$ETCD_PORT" "$SMTPMUX_HTTP_PORT")
	if ! SMX_NAME=$sys SMTPMUX_EXTRA="${SMTPMUX_EXTRA:-}$cluster" start_smtpmux || ! setup_smtpmux_relay; then
		log "$sys: skipped — $SKIP"
		jq -nc --arg s "$sys" --arg why "$SKIP" '{system: $s, skipped: $why}'
		stop_smtpmux
		stop_etcd
		return 0
	fi
	local smx_m="http://127.0.0.1:$SMTPMUX_METRICS_PORT/metrics" etcd_m="http://127.0.0.1:$ETCD_PORT/metrics"
	local w0 p0 c0 w1 p1 c1 delivered
	w0=$(metric "$smx_m" smtpmux_cluster_quota_etcd_writes_total)
	p0=$(metric "$etcd_m" etcd_server_proposals_committed_total)
	c0=$(proc_cpu "$ETCD_PID")
	smtpmux_driver_flags
	run_system "$sys" "$SMX_PID" "${SMX_FLAGS[@]}" >"$WORK/$sys.raw.json"
	w1=$(metric "$smx_m" smtpmux_cluster_quota_etcd_writes_total)
	p1=$(metric "$etcd_m" etcd_server_proposals_committed_total)
	c1=$(proc_cpu "$ETCD_PID")
	delivered=$(jq -s --arg s "$sys" 'map(select(.system == $s) | .delivered) | add // 0' "$RUNLOG")
	delivered=$((delivered + WARMUP))
	jq -c --argjson w $((w1 - w0)) --argjson p $((p1 - p0)) --argjson d "$delivered" \
		--argjson cpu "$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b-a}')" --arg quotas "${PROVIDER_QUOTAS:-}" '
		. + {etcd_cpu_s: ($cpu * 100 | round / 100), delivered_total: $d, provider_quotas: (if $quotas == "" then null else $quotas end),
		     quota_etcd_writes: $w, quota_writes_per_msg: (if $d > 0 then ($w / $d * 10000 | round / 10000) else null end),
		     etcd_proposals: $p, etcd_proposals_per_msg: (if $d > 0 then ($p / $d * 10000 | round / 10000) else null end)}' \
		"$WORK/$sys.raw.json" | tee "$WORK/$sys.json"
	stop_smtpmux
	stop_etcd
}

# proc_cpu PID: the process's CPU seconds so far (user + system).
proc_cpu() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# ---------------------------------------------------------------- main
log "N=$N SIZE=$SIZE C=$C RUNS=$RUNS WARMUP=$WARMUP, $(nproc) cores, work dir $WORK"
for sys in $SYSTEMS; do
	case $sys in
	ceiling) run_ceiling ;;
	postfix) run_postfix ;;
	maddy) run_maddy ;;
	smtpmux) run_smtpmux ;;
	smtpmux-etcd) run_smtpmux_etcd ;;
	*) die "unknown system $sys (ceiling, postfix, maddy, smtpmux, smtpmux-etcd)" ;;
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

# Cluster mode against a single node on bbolt, when both ran.
if [[ -s $WORK/smtpmux.json && -s $WORK/smtpmux-etcd.json ]] && jq -e '.delivered_per_s != null' "$WORK/smtpmux-etcd.json" >/dev/null; then
	jq -sc '.[0] as $b | .[1] as $e |
		def ratio(f): if ($b[f] // 0) == 0 or $e[f] == null then null else ($e[f] / $b[f] * 100 | round) / 100 end;
		{ratio: "smtpmux-etcd/smtpmux", size: $e.size,
		 accepted_per_s: ratio("accepted_per_s"), delivered_per_s: ratio("delivered_per_s"),
		 p50_ms: ratio("p50_ms"), p99_ms: ratio("p99_ms"), relay_cpu_s: ratio("relay_cpu_s"),
		 etcd_cpu_s: $e.etcd_cpu_s, quota_writes_per_msg: $e.quota_writes_per_msg, etcd_proposals_per_msg: $e.etcd_proposals_per_msg,
		 target: "delivered_per_s >= 0.85", target_met: ((ratio("delivered_per_s") // 0) >= 0.85)}' \
		"$WORK/smtpmux.json" "$WORK/smtpmux-etcd.json"
fi

# smtpmux against maddy, when both ran.
if [[ -s $WORK/maddy.json && -s $WORK/smtpmux.json ]] && jq -e '.delivered_per_s != null' "$WORK/maddy.json" >/dev/null; then
	jq -sc '.[0] as $d | .[1] as $m |
		def ratio(f): if ($d[f] // 0) == 0 or $m[f] == null then null else ($m[f] / $d[f] * 100 | round) / 100 end;
		{ratio: "smtpmux/maddy", size: $m.size,
		 accepted_per_s: ratio("accepted_per_s"), delivered_per_s: ratio("delivered_per_s"),
		 p50_ms: ratio("p50_ms"), p99_ms: ratio("p99_ms"), peak_rss_mb: ratio("peak_rss_mb"), relay_cpu_s: ratio("relay_cpu_s")}' \
		"$WORK/maddy.json" "$WORK/smtpmux.json"
fi
