#!/usr/bin/env bash
# bench/profile_enqueue.sh: where enqueue's time goes, next to the plain
# INSERT it is compared with (figure 1).  Runs each pgbench script of
# bench/enqueue.sh for DURATION seconds (default 10) with perf recording the
# backend, and prints the top functions (self time) of each, plus a
# caller-inclusive view of enqueue's.
# Needs perf (apt-get install linux-perf) and root.
# Env: VARIANTS (default "plain100 enq100"; the scripts are plain1, enq_select1,
# enq_from1, plain100, enq100: see bench_enqueue_setup), DURATION, TOP (default 35).
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
VARIANTS=${VARIANTS:-plain100 enq100}
TOP=${TOP:-35}
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }

bench_install
bench_start profile "fsync = off" "txoutbox.workers = 0"
bench_enqueue_setup
s=$BENCH_DIR/scripts

for v in $VARIANTS; do
	"${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" \
		pgbench -n -M prepared -c 1 -T "$((DURATION + 2))" -f "$s/$v.sql" bench >"$BENCH_DIR/$v.pgbench" 2>&1 &
	pg=$!
	sleep 1
	bpid=$(bench_psql -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' LIMIT 1")
	perf record -q -g -o "$BENCH_DIR/$v.perf" -p "$bpid" -- sleep "$DURATION" >/dev/null 2>&1
	wait $pg
	echo "== $v: $(grep '^tps' "$BENCH_DIR/$v.pgbench")"
	perf report -q -i "$BENCH_DIR/$v.perf" --no-children --sort symbol --percent-limit 0.7 -g none 2>/dev/null \
		| grep -v '^$' | head -n "$TOP"
	if [[ $v == enq* ]]; then
		echo "-- $v, inclusive (children):"
		perf report -q -i "$BENCH_DIR/$v.perf" --children --sort symbol --percent-limit 3 -g none 2>/dev/null \
			| grep -v '^$' | head -n "$TOP"
	fi
done
