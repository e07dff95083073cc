#!/usr/bin/env bash
# bench/ordered_vs_unordered.sh: figure 8 (issue 7).  N messages (default
# 10000) on KEYS keys (default 100, so N/KEYS messages per key, enqueued in
# key-interleaved order) committed in one transaction to a notify route; time
# from the commit until none is unfinished (all checked succeeded).  Three
# variants on the same cluster, interleaved, REPS times (default 2), median:
#   unordered      route bench.free ({"channel": "bench"}), no ordered route
#                  enabled anywhere: the claim as before issue 7;
#   unordered+ord  the same, while an ordered route exists for another topic
#                  (the claim then checks each keyed candidate's route);
#   ordered        route bench.ord ({"ordered": true}): one message per key
#                  per round, each after the one before it committed.
# Worker: txoutbox.workers = WORKERS (default 1), txoutbox.batch_size =
# BATCH (default 500).  Env: N, KEYS, REPS, WORKERS, BATCH, FSYNC (default on),
# BENCH_TIMEOUT (seconds per variant, default 600).
. "$(dirname "$0")/lib.sh"

N=${N:-10000}
KEYS=${KEYS:-100}
REPS=${REPS:-2}
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
-- cheap); an error after timeout_s.
CREATE FUNCTION bench_wait_done(timeout_s float8) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM txoutbox.messages
                               WHERE status IN ('pending', 'retrying', 'processing'));
        IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
            RAISE EXCEPTION 'not done after % s', timeout_s;
        END IF;
        PERFORM pg_sleep(0.005);
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - t0);
END
$$;
EOF

# run_variant TOPIC ORDERED_ROUTE_ENABLED -> msg/s
run_variant() {
	local topic=$1 ord_enabled=$2 secs ok
	bench_psql -c "UPDATE txoutbox.routes SET enabled = $ord_enabled WHERE topic_pattern = 'bench.ord'" \
		-c "TRUNCATE txoutbox.messages" -c "CHECKPOINT" >/dev/null
	secs=$(bench_psql -v topic="$topic" -v n="$N" -v keys="$KEYS" -v timeout="$BENCH_TIMEOUT" <<'EOF'
\set QUIET on
BEGIN;
SELECT count(txoutbox.enqueue(:'topic', jsonb_build_object('order_id', g, 'amount', 1999, 'currency', 'EUR'),
                              message_key => 'k' || (g % :keys))) AS enqueued
  FROM generate_series(1, :n) g \gset
COMMIT;
SELECT bench_wait_done(:timeout);
EOF
)
	ok=$(bench_psql -c "SELECT count(*) FILTER (WHERE status = 'succeeded') FROM txoutbox.messages")
	[ "$ok" = "$N" ] || { bench_log "$topic: only $ok of $N succeeded"; return 1; }
	python3 -c "print('%.1f' % ($N / $secs))"
}

declare -A rate
for rep in $(seq 1 "$REPS"); do
	r=$(run_variant bench.free false)
	bench_log "rep $rep, unordered: $r msg/s"
	rate[free]="${rate[free]:-} $r"
	r=$(run_variant bench.free true)
	bench_log "rep $rep, unordered beside an ordered route: $r msg/s"
	rate[free_ord]="${rate[free_ord]:-} $r"
	r=$(run_variant bench.ord true)
	bench_log "rep $rep, ordered: $r msg/s"
	rate[ord]="${rate[ord]:-} $r"
done

free=$(bench_median ${rate[free]})
free_ord=$(bench_median ${rate[free_ord]})
ord=$(bench_median ${rate[ord]})
bench_result "8. ordered notify route, $N msgs on $KEYS keys, $WORKERS worker(s)" "$ord" "msg/s" \
	"unordered notify route, same messages" "$free" "$(bench_ratio "$ord" "$free")" "" \
	"commit to all succeeded; $((N / KEYS)) msgs per key, one per key per round; batch_size $BATCH; fsync=$FSYNC; median of $REPS"
bench_result "8. unordered notify route while an ordered route exists, $N msgs" "$free_ord" "msg/s" \
	"unordered, no ordered route enabled" "$free" "$(bench_ratio "$free_ord" "$free")" ">= 0.9" \
	"the claim's per-key check runs only when some route is ordered; median of $REPS"

bench_print_mine
