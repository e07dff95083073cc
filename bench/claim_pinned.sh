#!/usr/bin/env bash
# bench/claim_pinned.sh: figure 17 (issue 17).  An external consumer drains
# CLAIM_N messages (default 1,000,000) with claim() from SQL, in ROUNDS
# rounds (default 10): each round commits CLAIM_N/ROUNDS messages of a topic
# no route serves (so the worker leaves them alone) in one transaction, then
# one session loops `claim(consumer, BATCH)` (default 1000) and acks each
# claimed message with mark_succeeded() in the next transaction, until the
# round's messages are all succeeded; the consumer's time is what is timed.
# Succeeded messages stay in the table, so each round claims past everything
# before it.  Two runs, each on a fresh cluster: unpinned, and pinned (a
# second session holds an idle REPEATABLE READ transaction, its snapshot
# taken before the first round, for the whole run: VACUUM can remove
# nothing, and no scan can mark a finished message's index entry dead).
# The figure: the pinned run's consumer throughput against the unpinned
# run's (target >= 0.8x), and the last rounds'.
# Env: CLAIM_N, ROUNDS, BATCH, FSYNC (default on), PINS (default "0 1"; "1":
# the pinned run only, no figure).
. "$(dirname "$0")/lib.sh"

CLAIM_N=${CLAIM_N:-1000000}
ROUNDS=${ROUNDS:-10}
BATCH=${BATCH:-1000}
FSYNC=${FSYNC:-on}
PINS=${PINS:-0 1}
PER=$((CLAIM_N / ROUNDS))

bench_results_init
bench_install

declare -A total last rounds

one_run() {
	local pin=$1 r t0 t1 secs consumed=0 rates=()
	bench_start "claim$pin" "fsync = $FSYNC" "txoutbox.workers = 1"
	bench_psql >/dev/null <<'EOF'
-- The consumer: claim a batch and commit (the lease), ack every message of
-- it and commit, until n messages are done.
CREATE PROCEDURE bench_consume(n int, batch int)
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
    done int := 0;
BEGIN
    WHILE done < n LOOP
        SELECT array_agg(c.id) INTO ids FROM txoutbox.claim('bench-consumer', batch, 'bench.ext') c;
        COMMIT;
        IF ids IS NULL THEN
            RAISE EXCEPTION 'nothing to claim after % of % messages', done, n;
        END IF;
        PERFORM txoutbox.mark_succeeded(i, consumer => 'bench-consumer') FROM unnest(ids) i;
        COMMIT;
        done := done + cardinality(ids);
    END LOOP;
END
$$;
EOF
	if [ "$pin" = 1 ]; then bench_pin || return 1; fi
	for r in $(seq 1 "$ROUNDS"); do
		bench_psql -c "SELECT count(txoutbox.enqueue('bench.ext', jsonb_build_object('order_id', g, 'amount', 1999, 'currency', 'EUR'))) FROM generate_series(1, $PER) g" >/dev/null
		t0=$(date +%s.%N)
		bench_psql -c "CALL bench_consume($PER, $BATCH)"
		t1=$(date +%s.%N)
		secs=$(python3 -c "print($t1 - $t0)")
		consumed=$(python3 -c "print($consumed + $secs)")
		rates+=("$(python3 -c "print('%.1f' % ($PER / $secs))")")
		bench_log "pin=$pin round $r: ${rates[-1]} msg/s"
	done
	total[$pin]=$(python3 -c "print('%.1f' % ($CLAIM_N / $consumed))")
	last[$pin]=${rates[-1]}
	rounds[$pin]=$(printf '%s ' "${rates[@]}" | python3 -c 'import sys; print(" ".join("%.1fk" % (float(x) / 1000) for x in sys.stdin.read().split()))')
	local ok
	ok=$(bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE status = 'succeeded'")
	[ "$ok" = "$CLAIM_N" ] || { bench_log "only $ok of $CLAIM_N succeeded"; return 1; }
	if [ "$pin" = 1 ]; then
		bench_pin_held || { bench_log "the pinning session lost its snapshot before the end"; return 1; }
		bench_unpin
	fi
	bench_stop
	trap - EXIT
	BENCH_DIR=
}

for pin in $PINS; do
	one_run "$pin"
done
[ "$PINS" = "0 1" ] || exit 0

bench_result "17. claim() from SQL under a pinned snapshot, $CLAIM_N msgs in $ROUNDS rounds" "${total[1]}" "msg/s" \
	"the same, unpinned (fresh cluster)" "${total[0]}" "$(bench_ratio "${total[1]}" "${total[0]}")" ">= 0.8" \
	"claim($BATCH) + mark_succeeded per message, one session; rounds pinned: ${rounds[1]}; unpinned: ${rounds[0]}"
bench_result "17. claim() pinned: last round" "${last[1]}" "msg/s" \
	"unpinned last round" "${last[0]}" "$(bench_ratio "${last[1]}" "${last[0]}")" "" \
	"$((CLAIM_N / ROUNDS * (ROUNDS - 1))) succeeded messages behind it, none removable while pinned"

bench_print_mine
