#!/usr/bin/env bash
# bench/ordered_vs_unordered.sh: figure 8 (issues 7 and 17).  N messages
# (default 10000) on K keys (N/K messages per key, enqueued in
# key-interleaved order) committed in one transaction to a notify route;
# time from the commit until none is unfinished (all checked succeeded).
# For each K in KEYS (default "100 10": 100 keys x 100 messages and 10 keys
# x 1,000), three variants on the same cluster, interleaved, REPS times
# (default 3), median:
#   unordered      route bench.free ({"channel": "bench"}), no ordered route
#                  enabled anywhere: the claim as before issue 7;
#   unordered+ord  the same, while an ordered route exists for another topic
#                  (the claim then checks each keyed candidate's route);
#   ordered        route bench.ord ({"ordered": true}): each round takes a
#                  run of each key's messages and publishes them in waves,
#                  each after the one before it succeeded (dispatch.c).
# Worker: txoutbox.workers = WORKERS (default 1), txoutbox.batch_size =
# BATCH (default 500).  Env: N, KEYS, REPS, WORKERS, BATCH, FSYNC (default on),
# BENCH_TIMEOUT (seconds per variant, default 600).
. "$(dirname "$0")/lib.sh"

N=${N:-10000}
KEYS=${KEYS:-100 10}
REPS=${REPS:-3}
WORKERS=${WORKERS:-1}
BATCH=${BATCH:-500}
FSYNC=${FSYNC:-on}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600}

bench_results_init
bench_install
bench_start ordered "fsync = $FSYNC" "txoutbox.workers = $WORKERS" "txoutbox.batch_size = $BATCH"

bench_psql >/dev/null <<'EOF'
SELECT txoutbox.add_route('bench.free', 'notify', '{"channel": "bench"}') IS NOT NULL;
SELECT txoutbox.add_route('bench.ord', 'notify', '{"channel": "bench", "ordered": true}') IS NOT NULL;

-- Seconds until no message is unfinished (the claim index makes the check
-- cheap); an error after timeout_s.  A procedure that commits between
-- looks: a function would hold one snapshot for the whole wait, and with it
-- every row version the worker leaves behind (not what an application's
-- poll does).
CREATE PROCEDURE bench_wait_done(timeout_s float8, INOUT secs float8 DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    busy boolean;
BEGIN
    LOOP
        SELECT EXISTS (SELECT 1 FROM txoutbox.messages
                        WHERE status IN ('pending', 'retrying', 'processing')) INTO busy;
        COMMIT;
        EXIT WHEN NOT busy;
        IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
            RAISE EXCEPTION 'not done after % s', timeout_s;
        END IF;
        PERFORM pg_sleep(0.005);
    END LOOP;
    secs := extract(epoch FROM clock_timestamp() - t0);
END
$$;
EOF

# run_variant TOPIC ORDERED_ROUTE_ENABLED KEYS -> msg/s
run_variant() {
	local topic=$1 ord_enabled=$2 keys=$3 secs ok
	bench_psql -c "UPDATE txoutbox.routes SET enabled = $ord_enabled WHERE topic_pattern = 'bench.ord'" \
		-c "TRUNCATE txoutbox.messages" -c "CHECKPOINT" >/dev/null
	secs=$(bench_psql -v topic="$topic" -v n="$N" -v keys="$keys" -v timeout="$BENCH_TIMEOUT" <<'EOF'
\set QUIET on
BEGIN;
SELECT count(txoutbox.enqueue(:'topic', jsonb_build_object('order_id', g, 'amount', 1999, 'currency', 'EUR'),
                              message_key => 'k' || (g % :keys))) AS enqueued
  FROM generate_series(1, :n) g \gset
COMMIT;
CALL bench_wait_done(:timeout);
EOF
)
	ok=$(bench_psql -c "SELECT count(*) FILTER (WHERE status = 'succeeded') FROM txoutbox.messages")
	[ "$ok" = "$N" ] || { bench_log "$topic: only $ok of $N succeeded"; return 1; }
	python3 -c "print('%.1f' % ($N / $secs))"
}

for keys in $KEYS; do
	declare -A rate=()
	for rep in $(seq 1 "$REPS"); do
		r=$(run_variant bench.free false "$keys")
		bench_log "$keys keys, rep $rep, unordered: $r msg/s"
		rate[free]="${rate[free]:-} $r"
		r=$(run_variant bench.free true "$keys")
		bench_log "$keys keys, rep $rep, unordered beside an ordered route: $r msg/s"
		rate[free_ord]="${rate[free_ord]:-} $r"
		r=$(run_variant bench.ord true "$keys")
		bench_log "$keys keys, rep $rep, ordered: $r msg/s"
		rate[ord]="${rate[ord]:-} $r"
	done
	free=$(bench_median ${rate[free]})
	free_ord=$(bench_median ${rate[free_ord]})
	ord=$(bench_median ${rate[ord]})
	case $keys in 100) target=">= 0.5" ;; 10) target=">= 0.3" ;; *) target="" ;; esac
	bench_result "8. ordered notify route, $N msgs on $keys keys, $WORKERS worker(s)" "$ord" "msg/s" \
		"unordered notify route, same messages" "$free" "$(bench_ratio "$ord" "$free")" "$target" \
		"commit to all succeeded; $((N / keys)) msgs per key, a run per key per round in waves; batch_size $BATCH; fsync=$FSYNC; median of $REPS"
	bench_result "8. unordered notify route while an ordered route exists, $N msgs on $keys keys" "$free_ord" "msg/s" \
		"unordered, no ordered route enabled" "$free" "$(bench_ratio "$free_ord" "$free")" ">= 0.9" \
		"the claim's per-key check runs only when some route is ordered; median of $REPS"
	unset rate
done

bench_print_mine
