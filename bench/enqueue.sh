#!/usr/bin/env bash
# bench/enqueue.sh: figure 1 (issues 2 and 5).  txoutbox.enqueue() vs a plain
# INSERT of the same row into an equivalent table, pgbench -M prepared,
# 1 and 2 clients, 1 row per transaction and 100 rows per transaction,
# fsync = off so that the CPU cost shows rather than the disk flush.
#
# The equivalent table is CREATE TABLE bench_plain (LIKE txoutbox.messages
# INCLUDING ALL) (same columns, defaults, constraints, indexes), with the
# storage parameters of txoutbox.messages copied and id defaulting to
# gen_random_uuid().  The plain INSERT writes the same values enqueue writes
# (topic, payload, max_attempts 10; the rest from the column defaults).
#
# The dispatcher is off (txoutbox.workers = 0): this figure is the cost of
# the call in the enqueuing session; with a worker the messages (which have
# no route here) would be claimed and retried on the same 2 cores.
#
# Each variant runs REPS times (default 2), interleaved, each on an emptied
# table; the median tps is reported.  Env: DURATION (s, default 20), REPS,
# CLIENTS (default "1 2").
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-20}
REPS=${REPS:-2}
CLIENTS=${CLIENTS:-1 2}

bench_results_init
bench_install
bench_start enqueue "fsync = off" "txoutbox.workers = 0"

bench_enqueue_setup
s=$BENCH_DIR/scripts

# Run one pgbench measurement; print its tps.
run_one() {
	local script=$1 clients=$2 out
	bench_psql -c "TRUNCATE bench_plain, txoutbox.messages" -c "CHECKPOINT" >/dev/null
	out=$("${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" \
		pgbench -n -M prepared -c "$clients" -j "$clients" -T "$DURATION" -f "$s/$script.sql" bench 2>&1) || {
		echo "$out" >&2
		return 1
	}
	echo "$out" | awk '/^tps = / {print $3; exit}'
}

declare -A tps
variants1=(plain1 enq_select1 enq_from1)
variants100=(plain100 enq100)
for rep in $(seq 1 "$REPS"); do
	for c in $CLIENTS; do
		for v in "${variants1[@]}" "${variants100[@]}"; do
			t=$(run_one "$v" "$c")
			bench_log "rep $rep, $c client(s), $v: $t tps"
			tps[$v.$c]="${tps[$v.$c]:-} $t"
		done
	done
done

# Check that enqueue really wrote messages and the plain table rows alike.
bench_psql -c "SELECT count(*) > 0 FROM txoutbox.messages WHERE status = 'pending' AND max_attempts = 10" | grep -qx t

note="pgbench -M prepared, ${DURATION}s x $REPS interleaved, median; fsync=off, workers=0"
for c in $CLIENTS; do
	plain=$(bench_median ${tps[plain1.$c]})
	sel=$(bench_median ${tps[enq_select1.$c]})
	from=$(bench_median ${tps[enq_from1.$c]})
	bench_result "1. enqueue, 1 row/txn, $c client(s): SELECT 1 FROM enqueue(...)" "$from" "txn/s" \
		"plain INSERT, 1 row/txn" "$plain" "$(bench_ratio "$from" "$plain")" ">= 0.8" "$note"
	bench_result "1. enqueue, 1 row/txn, $c client(s): SELECT enqueue(...)" "$sel" "txn/s" \
		"plain INSERT, 1 row/txn" "$plain" "$(bench_ratio "$sel" "$plain")" ">= 0.8" "returns the row to the client"
	p100=$(bench_median ${tps[plain100.$c]})
	e100=$(bench_median ${tps[enq100.$c]})
	bench_result "1. enqueue, 100 rows/txn, $c client(s)" \
		"$(python3 -c "print(round($e100*100))")" "msg/s" \
		"plain INSERT ... SELECT 100 rows/txn" "$(python3 -c "print(round($p100*100))")" \
		"$(bench_ratio "$e100" "$p100")" ">= 0.8" "SELECT count(enqueue(...)) FROM generate_series(1,100) g"
done

bench_print_mine
