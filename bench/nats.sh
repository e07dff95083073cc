#!/usr/bin/env bash
# bench/nats.sh: figure 9, NATS JetStream throughput (issue 12).
#
# Broker: nats-server with JetStream, file storage in a temp dir, on
# loopback; one stream (BENCH, subject bench.nats), purged before each run.
# Baseline in the same run: bench/nats_baseline.c, a plain libnats client
# (compiled here) publishing the same messages to the same stream the way
# txoutbox does: asynchronous JetStream publishes, PubAck handler, at most
# MAX_IN_FLIGHT awaiting their PubAck, a Nats-Msg-Id per message, the same
# headers and body, MaxWait 5 s.  It times from its first publish to its
# last PubAck.
#
# txoutbox: N messages (default 50,000) committed in one transaction to a
# nats route (max_in_flight MAX_IN_FLIGHT) on that stream; time from COMMIT
# returned until the worker has marked them all succeeded (its published
# count in worker_status(), polled every 100 ms; the table is checked
# after); also the dispatcher's CPU share of one core, nats-server's, and
# how idle the machine was.  REPS runs of each, interleaved; the
# medians and their ratio are reported.
#
# Env: N (50000), MAX_IN_FLIGHT (1024), REPS (3), BATCH_SIZE (1000), FSYNC (on),
# PERF=1 records the dispatcher with perf during the last txoutbox run
# (report in $BENCH_DIR/perf.txt, kept with BENCH_KEEP=1).
. "$(dirname "$0")/lib.sh"

N=${N:-50000}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-1024}
REPS=${REPS:-3}
BATCH_SIZE=${BATCH_SIZE:-1000}
FSYNC=${FSYNC:-on}
PERF=${PERF:-0}
BODY='{"order_id": 1, "total": 42.5, "lines": [1, 2, 3]}'

command -v nats-server >/dev/null || PATH=$PATH:/usr/sbin
command -v nats-server >/dev/null || { bench_log "nats-server is needed (apt-get install nats-server)"; exit 1; }

bench_results_init
bench_install

# ---- the broker and the baseline client --------------------------------------------
NATS_DIR=$(mktemp -d /tmp/txoutbox-bench-nats.XXXXXX)
chmod 755 "$NATS_DIR"
NATS_PORT=$(bench_free_port)
NATS_URL="nats://bench:bench-pw@127.0.0.1:$NATS_PORT"
nats-server -js -sd "$NATS_DIR/store" -a 127.0.0.1 -p "$NATS_PORT" --user bench --pass bench-pw \
	>"$NATS_DIR/nats-server.log" 2>&1 &
NATS_PID=$!
cleanup_nats() {
	kill "$NATS_PID" 2>/dev/null || true
	wait "$NATS_PID" 2>/dev/null || true
	[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$NATS_DIR"
	bench_stop
}
trap cleanup_nats EXIT
cc -O2 -o "$NATS_DIR/nats_baseline" "$BENCH_SRC/bench/nats_baseline.c" -lnats -lpthread
baseline() { "$NATS_DIR/nats_baseline" "$NATS_URL" "$@"; }
for i in $(seq 1 100); do baseline stream-create BENCH bench.nats 2>/dev/null && break; sleep 0.1; done
bench_log "nats-server $(nats-server --version | awk '{print $NF}') on port $NATS_PORT, stream BENCH"

# ---- txoutbox ---------------------------------------------------------------------
bench_start nats "fsync = $FSYNC" "txoutbox.workers = 1" "txoutbox.batch_size = $BATCH_SIZE" \
	"txoutbox.retention = 0"
trap cleanup_nats EXIT
bench_psql -c "SELECT txoutbox.add_route('bench.nats', 'nats', '{\"url\": \"$NATS_URL\", \"max_in_flight\": $MAX_IN_FLIGHT}')" >/dev/null
wpid=$(bench_psql -c "SELECT pid FROM txoutbox.worker_status() WHERE pid IS NOT NULL LIMIT 1")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
# the body as txoutbox sends it: the payload's jsonb text
SENT_BODY=$(bench_psql -c "SELECT '$BODY'::jsonb::text")

# One txoutbox run: prints "rate cpu%".
txoutbox_run() {
	local t0 t1 c0 c1 perf_pid=
	bench_psql -c "TRUNCATE txoutbox.messages" >/dev/null
	baseline stream-purge BENCH
	p0=$(bench_psql -c "SELECT sum(published) FROM txoutbox.worker_status()")
	bench_psql -c "SELECT count(*) FROM (SELECT txoutbox.enqueue('bench.nats', '$BODY'::jsonb) FROM generate_series(1, $N)) s" >/dev/null
	if [ "$1" = perf ]; then
		perf record -g -o "$BENCH_DIR/perf.data" -p "$wpid" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	t0=$(date +%s.%N)
	c0=$(cpu_ticks "$wpid")
	n0=$(cpu_ticks "$NATS_PID")
	i0=$(awk '/^cpu / {print $5 + $6}' /proc/stat)
	# the worker's own count (shared memory), not a scan of the table that
	# would compete with it
	until [ "$(bench_psql -c "SELECT sum(published) FROM txoutbox.worker_status()")" -ge "$((p0 + N))" ]; do
		sleep 0.1
	done
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$wpid")
	n1=$(cpu_ticks "$NATS_PID")
	i1=$(awk '/^cpu / {print $5 + $6}' /proc/stat)
	bench_log "nats-server CPU $(python3 -c "print('%.0f' % (100.0 * ($n1 - $n0) / $tck / ($t1 - $t0)))")%, machine idle $(python3 -c "print('%.0f' % (100.0 * ($i1 - $i0) / $tck / ($t1 - $t0)))")% (of $(nproc) cores x 100%)"
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" 2>/dev/null || true
		perf report -i "$BENCH_DIR/perf.data" --no-children --percent-limit 1 --stdio 2>/dev/null >"$BENCH_DIR/perf.txt" || true
		bench_log "perf report: $BENCH_DIR/perf.txt"
	fi
	[ "$(bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE status = 'succeeded'")" = "$N" ] ||
		bench_log "not all $N messages are succeeded after a txoutbox run"
	[ "$(baseline stream-count BENCH)" = "$N" ] || bench_log "the stream does not hold $N messages after a txoutbox run"
	python3 -c "print('%.0f %.0f' % ($N / ($t1 - $t0), 100.0 * ($c1 - $c0) / $tck / ($t1 - $t0)))"
}

# One baseline run: prints its rate.
baseline_run() {
	local out
	baseline stream-purge BENCH
	out=$(baseline publish bench.nats "$N" "$MAX_IN_FLIGHT" "$SENT_BODY")
	set -- $out
	[ "$2" = "$N" ] || bench_log "baseline: only $2 of $N acked ($3 failed)"
	echo "$1"
}

ours=()
base=()
cpus=()
for rep in $(seq 1 "$REPS"); do
	b=$(baseline_run)
	mode=plain
	[ "$PERF" = 1 ] && [ "$rep" = "$REPS" ] && mode=perf
	read -r t cpu <<<"$(txoutbox_run $mode)"
	bench_log "run $rep: baseline $b msg/s, txoutbox $t msg/s (worker CPU $cpu%)"
	ours+=("$t")
	base+=("$b")
	cpus+=("$cpu")
done
rate=$(bench_median "${ours[@]}")
ceiling=$(bench_median "${base[@]}")
cpu=$(bench_median "${cpus[@]}")
bench_result "10. NATS JetStream dispatch, $N msgs, max_in_flight $MAX_IN_FLIGHT" "$rate" "msg/s" \
	"plain libnats client, same messages, async PubAcks, same max in flight" "$ceiling" \
	"$(bench_ratio "$rate" "$ceiling")" ">= 20000 and >= 0.5" \
	"median of $REPS; runs: txoutbox ${ours[*]}, baseline ${base[*]}; worker CPU ${cpu}%; batch_size $BATCH_SIZE; fsync=$FSYNC"
bench_print_mine
