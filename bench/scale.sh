#!/usr/bin/env bash
# bench/scale.sh — issue 18's rows ("scale on one node"), one command.
#
# Runs the Go benchmarks that measure each row and prints one markdown
# table for bench/RESULTS.md (benchmark, time per op, and the metrics each
# reports: p50/p99, commits, enqueues/s …). The end-to-end delivery row
# (the daemon, the load driver and the sink, 2 vs 200 providers) runs with
# E2E=1 through bench/run.sh PROVIDERS=…; it takes minutes.
#
# Rows and their benchmarks:
#   GET /providers among 1 / 100 / 1,000 teams   admin BenchmarkListProvidersHTTP
#   creating 1,000 teams x 5 providers (1 / 8)    admin BenchmarkCreateTeamsHTTP
#   logs / metrics / usage of a big team           admin BenchmarkTeamReports (10k / 100k)
#   routing cost at 2 / 50 / 200 providers         routing BenchmarkChoose, relay BenchmarkHealthPick
#   delivery at 2 / 50 / 200 providers (in process) relay BenchmarkDelivery
#   acceptance during a retention sweep            internal/jobs BenchmarkAcceptanceDuringSweep
#   acceptance with the history mover / a drop     internal/jobs BenchmarkAcceptanceWithMover
# The restart row needs a multi-GB store: bench/cmd/bigstore (-open) builds
# and measures it (see bench/RESULTS.md), not run here.
#
# Parameters (environment): ROWS (space-separated subset of: providers
# teams reports routing delivery sweep mover), E2E=1, N for the e2e runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROWS=${ROWS:-"providers teams reports routing delivery sweep mover"}
E2E=${E2E:-0}
N=${N:-10000}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

bench() { # package, regexp, benchtime
	echo "scale: go test -bench '$2' -benchtime $3 $1" >&2
	go test -run '^$' -bench "$2" -benchtime "$3" -benchmem "$1" 2>&1 | grep -E '^Benchmark' >>"$out" || true
}
for row in $ROWS; do
	case $row in
	providers) bench ./admin/ 'ListProvidersHTTP' 200x ;;
	teams) bench ./admin/ 'CreateTeamsHTTP' 1x ;;
	reports) bench ./admin/ 'TeamReports' 5x ;;
	routing) bench ./routing/ 'Choose' 1s && bench ./relay/ 'HealthPick' 1s ;;
	delivery) bench ./relay/ 'Delivery' 4000x ;;
	sweep) bench ./internal/jobs/ 'AcceptanceDuringSweep' 1x ;;
	mover) bench ./internal/jobs/ 'AcceptanceWithMover' 1x ;;
	*) echo "scale: unknown row $row" >&2 ;;
	esac
done

echo "| benchmark | per op | metrics |"
echo "|---|---:|---|"
awk '{
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	ns = $3; per = (ns >= 1e9) ? sprintf("%.2f s", ns / 1e9) : (ns >= 1e6) ? sprintf("%.2f ms", ns / 1e6) : (ns >= 1e3) ? sprintf("%.1f µs", ns / 1e3) : sprintf("%.0f ns", ns)
	m = ""
	for (i = 5; i + 1 <= NF; i += 2) m = m (m == "" ? "" : ", ") $i " " $(i + 1)
	printf "| %s | %s | %s |\n", name, per, m
}' "$out"

if [[ $E2E == 1 ]]; then
	echo
	echo "| end to end (bench/run.sh, N=$N) | delivered/s | p99 accept | relay CPU s |"
	echo "|---|---:|---:|---:|"
	for p in 2 200; do
		line=$(SYSTEMS=smtpmux PROVIDERS=$p N=$N RUNS=1 bench/run.sh 2>/dev/null | head -1)
		jq -r --arg p "$p" '"| \($p) providers | \(.delivered_per_s) | \(.p99_ms) ms | \(.relay_cpu_s) |"' <<<"$line"
	done
fi
