#!/usr/bin/env bash
# bench/workers.sh: figure 15 (issue 17).  txoutbox.workers = 2 against 1 on
# the same machine, for a notify route (bench/notify_dispatch.sh, 100,000
# messages in one transaction, batch_size 1000) and a signed http route
# (bench/http_dispatch.sh, 50,000 webhooks, no latency part).  Each script
# runs with WORKERS=1, then 2, then 1 and 2 again (fresh clusters each time);
# the rows give the median of each.  Env: ROUNDS (default 2), and the two
# scripts' own settings (N, NOTIFY_REPS, CONCURRENCY, FSYNC ...).
. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-2}
bench_results_init
bench_install
here=$(dirname "$0")

# $1: script, $2: workers, $3: the figure's prefix in that script's rows.
run_one() {
	local out
	out=$(mktemp /tmp/txoutbox-bench-workers.XXXXXX)
	BENCH_RESULTS=$out WORKERS=$2 "$here/$1" >/dev/null
	grep "^$3" "$out" | cut -f2
	rm -f "$out"
}

declare -A rate
for round in $(seq 1 "$ROUNDS"); do
	for w in 1 2; do
		r=$(BATCHES=1000 NOTIFY_REPS=${NOTIFY_REPS:-1} run_one notify_dispatch.sh "$w" "2. NOTIFY dispatch")
		bench_log "round $round, notify, $w worker(s): $r msg/s"
		rate[notify.$w]="${rate[notify.$w]:-} $r"
		r=$(LAT_N=0 LOAD_RATE=0 WRK_SECONDS=${WRK_SECONDS:-5} run_one http_dispatch.sh "$w" "3. HTTP dispatch")
		bench_log "round $round, http, $w worker(s): $r msg/s"
		rate[http.$w]="${rate[http.$w]:-} $r"
	done
done

for kind in notify http; do
	one=$(bench_median ${rate[$kind.1]})
	two=$(bench_median ${rate[$kind.2]})
	bench_result "15. $kind dispatch, txoutbox.workers = 2" "$two" "msg/s" "txoutbox.workers = 1, same messages" \
		"$one" "$(bench_ratio "$two" "$one")" "report" \
		"$(nproc) cores; median of $ROUNDS; runs: 1 worker$(printf ' %.0f' ${rate[$kind.1]}), 2 workers$(printf ' %.0f' ${rate[$kind.2]})"
done
bench_print_mine
