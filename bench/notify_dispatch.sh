#!/usr/bin/env bash
# bench/notify_dispatch.sh: figure 2 (issues 3 and 5).  N messages (default
# 100000) committed in one transaction to a notify route, one LISTENing
# client; time from the commit until the listener has received all N (each
# notification commits with its succeeded mark, so all are succeeded then;
# the script checks it).  Baseline on an identical set of rows in an
# identical table (bench_q: LIKE txoutbox.messages INCLUDING ALL, same storage
# parameters): a hand-written plpgsql loop that claims BATCH rows with
# UPDATE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED LIMIT n))
# RETURNING, sends one pg_notify per row (a JSON envelope with the same
# fields), marks them succeeded and COMMITs, until none are left.  Also
# measured: raw pg_notify of N envelopes in transactions of BATCH, no table
# (the ceiling of NOTIFY and of this listener).
#
# Worker: txoutbox.workers = WORKERS (default 1), txoutbox.batch_size = each of
# BATCHES (the worker CPU figure is the first dispatcher's).
# Each variant runs NOTIFY_REPS times (default 3) interleaved; the median is
# reported, with every run in the note (the claim's plan changes when
# autovacuum analyzes the table, so runs can differ by 5x).
# Env: N, BATCHES (default "500 1000"), NOTIFY_REPS, FSYNC (default on), WORKERS.
. "$(dirname "$0")/lib.sh"

N=${N:-100000}
BATCHES=${BATCHES:-500 1000}
REPS=${NOTIFY_REPS:-3}
FSYNC=${FSYNC:-on}
WORKERS=${WORKERS:-1}
export BENCH_TIMEOUT=${BENCH_TIMEOUT:-120}

bench_results_init
bench_install
bench_start notify "fsync = $FSYNC" "txoutbox.workers = $WORKERS"

bench_psql <<'EOF'
SELECT txoutbox.add_route('bench.notify', 'notify', '{"channel": "bench"}') IS NOT NULL;
CREATE TABLE bench_q (LIKE txoutbox.messages INCLUDING ALL);
DO $$
BEGIN
    EXECUTE format('ALTER TABLE bench_q SET (%s)',
                   (SELECT array_to_string(reloptions, ', ') FROM pg_class
                     WHERE oid = 'txoutbox.messages'::regclass));
END
$$;

-- The hand-written loop: claim, notify, mark, commit, per batch.
CREATE PROCEDURE bench_loop(batch int) LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
    n int;
BEGIN
    LOOP
        WITH claimed AS (
            UPDATE bench_q m
               SET status = 'processing', locked_by = 'loop', locked_at = now(),
                   attempt_count = m.attempt_count + 1, updated_at = now()
             WHERE m.id = ANY (ARRAY(
                     SELECT q.id FROM bench_q q
                      WHERE q.status = ANY ('{pending,retrying,processing}'::text[])
                        AND q.available_at <= now()
                      ORDER BY q.available_at, q.id
                      LIMIT batch
                      FOR UPDATE SKIP LOCKED))
            RETURNING m.*)
        SELECT array_agg(c.id),
               count(pg_notify('bench', json_build_object(
                   'id', c.id, 'topic', c.topic, 'message_key', c.message_key,
                   'payload', c.payload, 'headers', c.headers,
                   'correlation_id', c.correlation_id, 'tenant_id', c.tenant_id,
                   'org_id', c.org_id, 'attempt', c.attempt_count,
                   'created_at', c.created_at)::text))
          INTO ids, n
          FROM claimed c;
        EXIT WHEN n = 0;
        UPDATE bench_q
           SET status = 'succeeded', published_at = now(), locked_by = NULL,
               locked_at = NULL, updated_at = now()
         WHERE id = ANY (ids) AND status = 'processing';
        COMMIT;
    END LOOP;
END
$$;

-- NOTIFY alone: the same number of envelopes, no table.
CREATE PROCEDURE bench_raw(total int, batch int) LANGUAGE plpgsql AS $$
DECLARE
    i int := 0;
BEGIN
    WHILE i < total LOOP
        PERFORM pg_notify('bench', json_build_object(
                   'id', gen_random_uuid(), 'topic', 'bench.notify', 'message_key', NULL,
                   'payload', jsonb_build_object('order_id', g, 'amount', 1999, 'currency', 'EUR'),
                   'headers', '{}'::jsonb, 'correlation_id', NULL, 'tenant_id', NULL,
                   'org_id', NULL, 'attempt', 1, 'created_at', now())::text)
           FROM generate_series(i + 1, least(i + batch, total)) g;
        COMMIT;
        i := i + batch;
    END LOOP;
END
$$;
EOF

pn() { "${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" PGDATABASE=bench BENCH_TIMEOUT="$BENCH_TIMEOUT" \
	perl "$BENCH_SRC/bench/pgnotify.pl" "$@"; }

worker_pid() { bench_psql -c "SELECT pid FROM txoutbox.worker_status() WHERE pid IS NOT NULL LIMIT 1"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_txoutbox() {
	local batch=$1 secs wpid c0 c1
	bench_set txoutbox.batch_size "$batch"
	bench_psql -c "TRUNCATE txoutbox.messages" -c "CHECKPOINT" >/dev/null
	wpid=$(worker_pid)
	c0=$(cpu_ticks "$wpid")
	secs=$(pn throughput txoutbox "$N" "$batch")
	c1=$(cpu_ticks "$wpid")
	local ok
	ok=$(bench_psql -c "SELECT count(*) FILTER (WHERE status = 'succeeded') FROM txoutbox.messages")
	[ "$ok" = "$N" ] || { bench_log "only $ok of $N succeeded"; return 1; }
	python3 -c "print('%.0f' % (100.0 * ($c1 - $c0) / $(getconf CLK_TCK) / $secs))" >"$BENCH_DIR/worker_cpu"
	bench_rss_kb "$wpid" >"$BENCH_DIR/worker_rss"
	python3 -c "print('%.1f' % ($N / $secs))"
}

run_loop() {
	local batch=$1 secs
	bench_psql -c "TRUNCATE bench_q" -c "CHECKPOINT" \
		-c "INSERT INTO bench_q (topic, payload, max_attempts) SELECT 'bench.notify', jsonb_build_object('order_id', g, 'amount', 1999, 'currency', 'EUR'), 10 FROM generate_series(1, $N) g" >/dev/null
	secs=$(pn throughput loop "$N" "$batch")
	local ok
	ok=$(bench_psql -c "SELECT count(*) FILTER (WHERE status = 'succeeded') FROM bench_q")
	[ "$ok" = "$N" ] || { bench_log "loop: only $ok of $N succeeded"; return 1; }
	python3 -c "print('%.1f' % ($N / $secs))"
}

run_raw() {
	local batch=$1 secs
	secs=$(pn throughput raw "$N" "$batch")
	python3 -c "print('%.1f' % ($N / $secs))"
}

declare -A rate cpu
for rep in $(seq 1 "$REPS"); do
	for b in $BATCHES; do
		r=$(run_txoutbox "$b")
		worker_cpu=$(cat "$BENCH_DIR/worker_cpu")
		worker_rss=$(cat "$BENCH_DIR/worker_rss")
		bench_log "rep $rep, batch $b, txoutbox: $r msg/s (worker CPU ${worker_cpu}%, RSS ${worker_rss} kB)"
		rate[tx.$b]="${rate[tx.$b]:-} $r"
		cpu[tx.$b]="${cpu[tx.$b]:-} $worker_cpu"
		r=$(run_loop "$b")
		bench_log "rep $rep, batch $b, SQL loop: $r msg/s"
		rate[loop.$b]="${rate[loop.$b]:-} $r"
	done
	r=$(run_raw 1000)
	bench_log "rep $rep, raw pg_notify: $r msg/s"
	rate[raw]="${rate[raw]:-} $r"
done

for b in $BATCHES; do
	tx=$(bench_median ${rate[tx.$b]})
	lp=$(bench_median ${rate[loop.$b]})
	bench_result "2. NOTIFY dispatch, $N msgs, batch_size $b, $WORKERS worker(s)" "$tx" "msg/s" \
		"SQL loop: claim $b (SKIP LOCKED) + pg_notify + mark, COMMIT per batch" "$lp" \
		"$(bench_ratio "$tx" "$lp")" ">= 0.67" \
		"commit to last received; worker CPU $(bench_median ${cpu[tx.$b]})%; fsync=$FSYNC; median of $REPS; runs: txoutbox$(printf ' %.0f' ${rate[tx.$b]}), loop$(printf ' %.0f' ${rate[loop.$b]})"
done
raw=$(bench_median ${rate[raw]})
bench_result "2. raw pg_notify, $N envelopes, 1000/txn (ceiling)" "$raw" "msg/s" \
	"" "" "" "" "NOTIFY + this listener alone, no table"
# against the ceiling: txoutbox at the largest batch size given
bench_result "2. NOTIFY dispatch vs the raw ceiling, batch_size $b" "$tx" "msg/s" \
	"raw pg_notify + the same listener, no table" "$raw" "$(bench_ratio "$tx" "$raw")" ">= 0.8" \
	"same runs as the rows above (issue 17)"

bench_print_mine
