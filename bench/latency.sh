#!/usr/bin/env bash
# bench/latency.sh: figure 4, notify part (issues 3 and 5).  Commit to NOTIFY
# latency, idle and under load.
#
# Method (bench/pgnotify.pl latency): one Perl process forks a listener
# (LISTEN bench on its own connection, timestamps each notification as it
# is read from the socket) and a writer that commits one message at a time,
# GAP_MS apart: BEGIN; SELECT 1 FROM txoutbox.enqueue('bench.latency',
# {"seq": n}); COMMIT.  Latency = time the listener read notification n -
# time the writer sent COMMIT n, both from CLOCK_MONOTONIC (one clock for
# both processes).  It is an upper bound of commit-to-publish: it includes
# the COMMIT itself (WAL flush, fsync on by default), the wake-up, the
# worker's round and the delivery to the listening client.
#
# Baseline in the same run, measured the same way: the writer's transaction
# inserts the same row into an equivalent plain table and sends the
# notification itself (INSERT ... RETURNING + pg_notify; COMMIT): the same
# commit, NOTIFY delivered with no dispatcher in between.
# Also reported: latency from COMMIT returned (minus the commit's own time,
# clipped at 0), which leaves out the WAL flush both variants pay.
#
# Under load: the same while pgbench enqueues LOAD_RATE messages/s (default
# 1000) to another notify route (channel bench_load, not listened to).
# Env: N (default 500), GAP_MS (default 15), LOAD_RATE (0 skips), FSYNC.
. "$(dirname "$0")/lib.sh"

N=${N:-500}
GAP_MS=${GAP_MS:-15}
LOAD_RATE=${LOAD_RATE:-1000}
FSYNC=${FSYNC:-on}
export BENCH_TIMEOUT=${BENCH_TIMEOUT:-60}

bench_results_init
bench_install
bench_start latency "fsync = $FSYNC" "txoutbox.workers = 1"

bench_psql >/dev/null <<'EOF'
SELECT txoutbox.add_route('bench.latency', 'notify', '{"channel": "bench"}');
SELECT txoutbox.add_route('bench.load', 'notify', '{"channel": "bench_load"}');
CREATE TABLE bench_plain (LIKE txoutbox.messages INCLUDING ALL);
ALTER TABLE bench_plain ALTER COLUMN id SET DEFAULT gen_random_uuid();
EOF

pn() { "${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" PGDATABASE=bench BENCH_TIMEOUT="$BENCH_TIMEOUT" \
	perl "$BENCH_SRC/bench/pgnotify.pl" "$@"; }

# Summarise "seq latency_ms commit_ms" lines: p50 p99 max commit_p50 lost
summary() {
	python3 -c '
import sys, statistics
lat, com, after, lost = [], [], [], 0
for line in open(sys.argv[1]):
    f = line.split()
    if f[1] == "lost":
        lost += 1
        continue
    lat.append(float(f[1])); com.append(float(f[2]))
    after.append(max(0.0, float(f[1]) - float(f[2])))
lat.sort(); after.sort()
def pct(v, p):
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]
print("%.2f %.2f %.2f %.2f %d %.2f %.2f" % (pct(lat, 50), pct(lat, 99), lat[-1],
      statistics.median(com), lost, pct(after, 50), pct(after, 99)))
' "$1"
}

measure() {
	local label=$1 mode=$2 out=$BENCH_DIR/lat-$1-$2.txt
	pn latency "$mode" "$N" "$GAP_MS" >"$out"
	summary "$out"
}

load_pid=
start_load() {
	local s=$BENCH_DIR/load.sql
	echo "SELECT 1 FROM txoutbox.enqueue('bench.load', jsonb_build_object('order_id', 1, 'amount', 1999));" >"$s"
	chmod a+r "$s"
	"${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" \
		pgbench -n -M prepared -c 1 -R "$LOAD_RATE" -T 3600 -f "$s" bench >"$BENCH_DIR/load.log" 2>&1 &
	load_pid=$!
	sleep 2
}
stop_load() {
	[ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null || true
	load_pid=
}

declare -A res
for phase in idle load; do
	if [ "$phase" = load ]; then
		[ "$LOAD_RATE" -gt 0 ] || continue
		start_load
	fi
	res[$phase.txoutbox]=$(measure "$phase" txoutbox)
	res[$phase.direct]=$(measure "$phase" direct)
	bench_log "$phase: txoutbox p50/p99/max/commit/lost = ${res[$phase.txoutbox]}; direct = ${res[$phase.direct]}"
	if [ "$phase" = load ]; then
		stop_load
		bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE topic = 'bench.load'" >"$BENCH_DIR/load_count"
	fi
done

for phase in idle load; do
	[ -n "${res[$phase.txoutbox]:-}" ] || continue
	read -r t50 t99 tmax tcommit tlost ta50 ta99 <<<"${res[$phase.txoutbox]}"
	read -r d50 d99 dmax dcommit dlost da50 da99 <<<"${res[$phase.direct]}"
	if [ "$phase" = idle ]; then what="idle"; else what="under load (${LOAD_RATE} msg/s enqueued)"; fi
	base="same INSERT + pg_notify in the committing txn"
	tgt50="-"
	[ "$phase" = idle ] && tgt50="< 5 ms"
	note="$N commits ${GAP_MS} ms apart; COMMIT sent -> received; ratio = txoutbox/baseline (lower is better); commit itself p50 ${tcommit} ms; lost $tlost; fsync=$FSYNC"
	bench_result "4. notify latency p50, $what" "$t50" "ms" "$base" "$d50" \
		"$(bench_ratio "$t50" "$d50")" "$tgt50" "$note"
	bench_result "4. notify latency p99, $what" "$t99" "ms" "$base" "$d99" \
		"$(bench_ratio "$t99" "$d99")" "" ""
	bench_result "4. notify latency max, $what" "$tmax" "ms" "$base" "$dmax" \
		"$(bench_ratio "$tmax" "$dmax")" "" ""
	bench_result "4. notify latency p50 from COMMIT returned, $what" "$ta50" "ms" "$base" "$da50" \
		"$(bench_ratio "$ta50" "$da50")" "" "excludes the commit's own flush (baseline commit p50 $dcommit ms)"
	bench_result "4. notify latency p99 from COMMIT returned, $what" "$ta99" "ms" "$base" "$da99" \
		"$(bench_ratio "$ta99" "$da99")" "" ""
done

bench_print_mine
