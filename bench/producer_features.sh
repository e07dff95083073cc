#!/usr/bin/env bash
# bench/producer_features.sh: figures 10 and 11 (issue 15).
#
# 10. enqueue with an idempotency key vs without, in the same run: pgbench
#     -M prepared, 1 client, 1 message per transaction, fsync = off, no
#     worker (as figure 1).  Variants: no key; a new key each call (random,
#     so the keyed insert's speculative path runs every time); and the same
#     key every call (each call finds the message and writes nothing).
# 11. fan-out to 3 destinations vs 3 single-route messages:
#     a. enqueue: one enqueue on a topic that 3 fan-out notify routes take
#        (3 rows) vs 3 enqueues, one on each of 3 topics with a notify route
#        of their own, in one transaction (3 rows); pgbench as above, rows/s.
#     b. dispatch: N messages fanned out to 3 notify routes (3N rows) vs 3N
#        messages on the 3 single-route topics, committed in one transaction,
#        1 worker (batch_size 1000); time from the commit until every row
#        succeeded (polled every 20 ms), rows/s.
# Each variant runs REPS times (default 3), interleaved; medians reported.
# Env: DURATION (s, default 15), REPS, N (default 30000), FSYNC (default off).
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-15}
REPS=${REPS:-3}
N=${N:-30000}
FSYNC=${FSYNC:-off}

bench_results_init
bench_install
bench_start features "fsync = $FSYNC" "txoutbox.workers = 0" "txoutbox.batch_size = 1000"

bench_psql <<'EOF' >/dev/null
SELECT txoutbox.add_route('fan.*', 'notify', '{"fanout": true, "channel": "bench_a"}');
SELECT txoutbox.add_route('fan.*', 'notify', '{"fanout": true, "channel": "bench_b"}');
SELECT txoutbox.add_route('fan.*', 'notify', '{"fanout": true, "channel": "bench_c"}');
SELECT txoutbox.add_route('one.a', 'notify', '{"channel": "bench_a"}');
SELECT txoutbox.add_route('one.b', 'notify', '{"channel": "bench_b"}');
SELECT txoutbox.add_route('one.c', 'notify', '{"channel": "bench_c"}');
EOF

s=$BENCH_DIR/scripts
mkdir -p "$s"
P="jsonb_build_object('order_id', :n::bigint, 'amount', 1999, 'currency', 'EUR')"
{ echo '\set n random(1, 1000000000)'
  echo "SELECT 1 FROM txoutbox.enqueue('orders.created', $P);"; } >"$s/nokey.sql"
{ echo '\set n random(1, 1000000000)'
  echo "SELECT 1 FROM txoutbox.enqueue('orders.created', $P, idempotency_key => 'order-' || :n);"; } >"$s/newkey.sql"
{ echo "SELECT 1 FROM txoutbox.enqueue('orders.created', '{\"order_id\": 1}', idempotency_key => 'order-1');"; } >"$s/samekey.sql"
{ echo '\set n random(1, 1000000000)'
  echo "SELECT 1 FROM txoutbox.enqueue('fan.order', $P);"; } >"$s/fan3.sql"
{ echo '\set n random(1, 1000000000)'
  echo "BEGIN;"
  for t in a b c; do echo "SELECT 1 FROM txoutbox.enqueue('one.$t', $P);"; done
  echo "COMMIT;"; } >"$s/single3.sql"
chmod -R a+rX "$s"

# One pgbench measurement of script; its tps.
run_one() {
	local out
	bench_psql -c "TRUNCATE txoutbox.messages" -c "CHECKPOINT" >/dev/null
	out=$("${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" \
		pgbench -n -M prepared -c 1 -j 1 -T "$DURATION" -f "$s/$1.sql" bench 2>&1) || {
		echo "$out" >&2
		return 1
	}
	echo "$out" | awk '/^tps = / {print $3; exit}'
}

declare -A tps
for rep in $(seq 1 "$REPS"); do
	for v in nokey newkey samekey fan3 single3; do
		t=$(run_one "$v")
		bench_log "rep $rep, $v: $t tps"
		tps[$v]="${tps[$v]:-} $t"
	done
done

note="pgbench -M prepared, 1 client, ${DURATION}s x $REPS interleaved, median; fsync=$FSYNC, workers=0"
nokey=$(bench_median ${tps[nokey]})
newkey=$(bench_median ${tps[newkey]})
samekey=$(bench_median ${tps[samekey]})
bench_result "12. enqueue with a new idempotency key each call" "$newkey" "txn/s" \
	"enqueue without a key" "$nokey" "$(bench_ratio "$newkey" "$nokey")" ">= 0.8" "$note"
bench_result "12. enqueue with a key already taken (returns the message)" "$samekey" "txn/s" \
	"enqueue without a key" "$nokey" "$(bench_ratio "$samekey" "$nokey")" "-" "writes nothing"
fan3=$(bench_median ${tps[fan3]})
single3=$(bench_median ${tps[single3]})
bench_result "13a. enqueue fanned out to 3 routes (3 rows per call)" \
	"$(python3 -c "print(round($fan3*3))")" "rows/s" \
	"3 enqueues on 3 single-route topics, one txn" "$(python3 -c "print(round($single3*3))")" \
	"$(bench_ratio "$fan3" "$single3")" ">= 0.9" "$note"

# --- 11b: dispatch -----------------------------------------------------------
bench_set txoutbox.workers 1
bench_wait_workers

# Commit the rows (fan: N fanned out; single: N on each one.* topic) and time
# the worker until all succeeded; prints rows/s.
dispatch_one() {
	local sql start end rows
	bench_psql -c "TRUNCATE txoutbox.messages" -c "CHECKPOINT" >/dev/null
	if [ "$1" = fan ]; then
		sql="SELECT count(txoutbox.enqueue('fan.order', jsonb_build_object('n', g))) FROM generate_series(1, $N) g"
	else
		sql="SELECT count(txoutbox.enqueue('one.' || t, jsonb_build_object('n', g)))
		       FROM generate_series(1, $N) g, unnest(ARRAY['a', 'b', 'c']) t"
	fi
	rows=$((3 * N))
	start=$(bench_psql -c "$sql" -c "SELECT extract(epoch FROM clock_timestamp())" | tail -n 1)
	for _ in $(seq 1 6000); do
		end=$(bench_psql -c "SELECT CASE WHEN count(*) FILTER (WHERE status <> 'succeeded') = 0
		                                 THEN extract(epoch FROM max(updated_at)) END FROM txoutbox.messages")
		[ -n "$end" ] && break
		sleep 0.02
	done
	[ "$(bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE status = 'succeeded'")" = "$rows" ] ||
		{ bench_log "dispatch $1: not every row succeeded"; return 1; }
	python3 -c "print(round($rows / ($end - $start)))"
}

declare -A rps
for rep in $(seq 1 "$REPS"); do
	for v in fan single; do
		r=$(dispatch_one "$v")
		bench_log "rep $rep, dispatch $v: $r rows/s"
		rps[$v]="${rps[$v]:-} $r"
	done
done
fan=$(bench_median ${rps[fan]})
single=$(bench_median ${rps[single]})
bench_result "13b. dispatch, $N messages x 3 fan-out notify routes" "$fan" "rows/s" \
	"$((3 * N)) messages on 3 single-route topics" "$single" "$(bench_ratio "$fan" "$single")" ">= 0.9" \
	"1 worker, batch_size 1000, commit to last succeeded (updated_at); fsync=$FSYNC; median of $REPS; runs: fan${rps[fan]}, single${rps[single]}"

bench_print_mine
