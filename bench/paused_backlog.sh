#!/usr/bin/env bash
# bench/paused_backlog.sh: figure 18.  A paused route's backlog must not slow
# the routes that flow.  N messages (default 20,000) to a notify route,
# committed in one transaction, from COMMIT until all are succeeded (polled
# every 50 ms): once on a cluster where nothing else waits (the baseline),
# once while a paused route holds a backlog of BACKLOG messages (default
# 200,000) enqueued before them, so that they sit between the low-water mark
# and the live messages in the claim's index order.  Also the worker's CPU
# over IDLE_SECONDS (default 5) with only the paused backlog left.
# REPS runs (default 3) of each, interleaved; medians are reported.
# OVERLAP=1: the live route is the prefix route bench.*, which matches the
# paused route's topic too (the claim then checks each message's own route).
. "$(dirname "$0")/lib.sh"

N=${N:-20000}
BACKLOG=${BACKLOG:-200000}
REPS=${REPS:-3}
IDLE_SECONDS=${IDLE_SECONDS:-5}
OVERLAP=${OVERLAP:-0}
live_pattern=bench.live
label=""
if [ "$OVERLAP" = 1 ]; then
	live_pattern='bench.*'
	label=" (live route bench.* matches its topic too)"
fi

bench_results_init
bench_install
bench_start paused "txoutbox.workers = 1" "txoutbox.batch_size = 1000" "txoutbox.retention = 0"
bench_psql >/dev/null <<EOF
SELECT txoutbox.add_route('$live_pattern', 'notify', '{"channel": "bench_live"}');
SELECT txoutbox.add_route('bench.paused', 'notify', '{"channel": "bench_paused"}');
EOF
paused_id=$(bench_psql -c "SELECT id FROM txoutbox.routes WHERE topic_pattern = 'bench.paused'")
wpid=$(bench_psql -c "SELECT pid FROM txoutbox.worker_status() WHERE pid IS NOT NULL LIMIT 1")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

# N live messages in one transaction, COMMIT to all succeeded: msg/s.
run_live() {
	local t0 t1
	bench_psql -c "DELETE FROM txoutbox.messages WHERE topic = 'bench.live'" -c "VACUUM txoutbox.messages" >/dev/null
	bench_psql -c "SELECT count(*) FROM (SELECT txoutbox.enqueue('bench.live', '{\"n\": 1}'::jsonb) FROM generate_series(1, $N)) s" >/dev/null
	t0=$(date +%s.%N)
	while [ "$(bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE topic = 'bench.live' AND status = 'succeeded'")" -lt "$N" ]; do
		sleep 0.05
	done
	t1=$(date +%s.%N)
	python3 -c "print('%.0f' % ($N / ($t1 - $t0)))"
}

backlog() {
	bench_psql -c "SELECT txoutbox.pause_route($paused_id)" >/dev/null
	bench_psql -c "SELECT count(*) FROM (SELECT txoutbox.enqueue('bench.paused', '{\"n\": 1}'::jsonb) FROM generate_series(1, $BACKLOG)) s" >/dev/null
}

declare -a base paused
for rep in $(seq 1 "$REPS"); do
	bench_psql -c "TRUNCATE txoutbox.messages" >/dev/null
	b=$(run_live)
	bench_log "rep $rep: $N live messages alone: $b msg/s"
	base+=("$b")
	backlog
	p=$(run_live)
	bench_log "rep $rep: $N live messages behind $BACKLOG paused: $p msg/s"
	paused+=("$p")
done
c0=$(cpu_ticks "$wpid")
sleep "$IDLE_SECONDS"
c1=$(cpu_ticks "$wpid")
idle_cpu=$(python3 -c "print('%.0f' % (100.0 * ($c1 - $c0) / $tck / $IDLE_SECONDS))")
bench_log "worker CPU with only the paused backlog left: $idle_cpu% of a core"

mb=$(bench_median "${base[@]}")
mp=$(bench_median "${paused[@]}")
bench_result "18. $N notify messages behind a paused route's $BACKLOG$label" "$mp" "msg/s" \
	"the same with no paused backlog" "$mb" "$(bench_ratio "$mp" "$mb")" ">= 0.8" \
	"worker CPU ${idle_cpu}% of a core with only the paused backlog"
bench_print_mine
