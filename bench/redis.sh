#!/usr/bin/env bash
# bench/redis.sh: figure 9 (issue 13).  Redis Streams throughput: N
# messages (default 50,000) through txoutbox's redis publisher, next to
# redis-benchmark running XADD of the same fields and payload against the
# same server in the same run.
#
# Server: Debian's redis-server on loopback, its own port and directory,
# no persistence (--save '' --appendonly no) for both sides, stopped by pid.
# Baseline: `redis-benchmark -c 1 -P PIPELINE -n N XADD <stream> * id <uuid>
# topic bench.redis payload <payload> headers {} attempt 1`: one
# connection, PIPELINE commands written before their replies are read
# (txoutbox's route uses one connection and max_in_flight = PIPELINE).
# Also shown, for scale: the same without pipelining (-P 1), a client that
# waits for each reply.
#
# txoutbox: the N messages committed in one transaction to a redis route
# (stream bench.txoutbox, same payload); from COMMIT returned until all are
# succeeded (polled every 50 ms), and the worker's CPU over that span (its
# share of one core, and messages per second of its CPU time: what the
# worker would do with a core of its own); the stream's XLEN is checked to
# be N.  REPS runs
# (default 3), interleaved with the baseline; medians are reported.
#
# Env: N, PIPELINE (default 1000), REPS (3), FSYNC (on), BATCH (1000,
# txoutbox.batch_size), BENCH_PERF (1: perf record -g of the worker during the
# last run, top of the report printed to stderr).
. "$(dirname "$0")/lib.sh"

N=${N:-50000}
PIPELINE=${PIPELINE:-1000}
REPS=${REPS:-3}
FSYNC=${FSYNC:-on}
BATCH=${BATCH:-1000}
BENCH_PERF=${BENCH_PERF:-0}
BODY='{"order_id": 1, "total": 42.5, "lines": [1, 2, 3]}'

for tool in redis-server redis-cli redis-benchmark; do
	command -v "$tool" >/dev/null || { bench_log "$tool is needed (apt-get install redis-server)"; exit 1; }
done

bench_results_init
bench_install

# ---- the server ---------------------------------------------------------------
REDIS_DIR=$(mktemp -d /tmp/txoutbox-bench-redis-server.XXXXXX)
chmod 755 "$REDIS_DIR"
REDIS_PORT=$(bench_free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
	--save '' --appendonly no --daemonize no --logfile "$REDIS_DIR/redis.log" &
REDIS_PID=$!
cleanup_redis() {
	kill "$REDIS_PID" 2>/dev/null || true
	wait "$REDIS_PID" 2>/dev/null || true
	rm -rf "$REDIS_DIR"
	bench_stop
}
trap cleanup_redis EXIT
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
until [ "$(rcli PING 2>/dev/null)" = PONG ]; do sleep 0.05; done
bench_log "redis-server $(redis-server --version | grep -o 'v=[0-9.]*') pid $REDIS_PID on port $REDIS_PORT"

# ---- txoutbox -------------------------------------------------------------------
bench_start redis "fsync = $FSYNC" "txoutbox.workers = 1" "txoutbox.batch_size = $BATCH" \
	"txoutbox.retention = 0"
trap cleanup_redis EXIT
bench_psql -c "SELECT txoutbox.add_route('bench.redis', 'redis', '{\"url\": \"redis://127.0.0.1:$REDIS_PORT/0\", \"stream\": \"bench.txoutbox\", \"max_in_flight\": $PIPELINE}')" >/dev/null
# the payload field as txoutbox sends it (jsonb's text form)
PAYLOAD=$(bench_psql -c "SELECT '$BODY'::jsonb::text")
SAMPLE_ID=$(bench_psql -c "SELECT gen_random_uuid()")
wpid=$(bench_psql -c "SELECT pid FROM txoutbox.worker_status() WHERE pid IS NOT NULL LIMIT 1")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

# One run: N messages in one transaction, COMMIT to all succeeded.
run_txoutbox() {
	local rep=$1 t0 t1 c0 c1 len perf_pid=
	bench_psql -c "TRUNCATE txoutbox.messages" -c "CHECKPOINT" >/dev/null
	rcli DEL bench.txoutbox >/dev/null
	bench_psql -c "SELECT count(*) FROM (SELECT txoutbox.enqueue('bench.redis', '$BODY'::jsonb) FROM generate_series(1, $N)) s" >/dev/null
	t0=$(date +%s.%N)
	c0=$(cpu_ticks "$wpid")
	if [ "$BENCH_PERF" = 1 ] && [ "$rep" = "$REPS" ]; then
		perf record -g -F 999 -p "$wpid" -o "$REDIS_DIR/perf.data" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	while [ "$(bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE status = 'succeeded'")" -lt "$N" ]; do
		sleep 0.05
	done
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$wpid")
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
	fi
	len=$(rcli XLEN bench.txoutbox)
	[ "$len" = "$N" ] || { bench_log "the stream has $len entries, not $N"; return 1; }
	python3 -c "print('%.0f' % (100.0 * ($c1 - $c0) / $tck / ($t1 - $t0)))" >"$REDIS_DIR/cpu"
	python3 -c "print('%.0f' % ($N / max(($c1 - $c0) / $tck, 0.01)))" >"$REDIS_DIR/per_cpu"
	python3 -c "print('%.0f' % ($N / ($t1 - $t0)))"
}

# redis-benchmark: the same XADD, one connection, pipeline $1.
run_baseline() {
	local pipeline=$1 n=$2
	rcli DEL bench.baseline >/dev/null
	redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c 1 -P "$pipeline" -n "$n" -q \
		XADD bench.baseline '*' id "$SAMPLE_ID" topic bench.redis payload "$PAYLOAD" headers '{}' attempt 1 2>&1 |
		tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -n 1 | awk '{printf "%.0f", $1}'
}

declare -a tx base base1 cpus per_cpu
for rep in $(seq 1 "$REPS"); do
	b=$(run_baseline "$PIPELINE" "$N")
	bench_log "rep $rep: redis-benchmark -c 1 -P $PIPELINE: $b XADD/s"
	base+=("$b")
	r=$(run_txoutbox "$rep")
	c=$(cat "$REDIS_DIR/cpu")
	pc=$(cat "$REDIS_DIR/per_cpu")
	bench_log "rep $rep: txoutbox: $r msg/s (worker CPU $c%, $pc messages per second of worker CPU)"
	tx+=("$r")
	cpus+=("$c")
	per_cpu+=("$pc")
	b1=$(run_baseline 1 $((N / 5)))
	bench_log "rep $rep: redis-benchmark -c 1 -P 1: $b1 XADD/s"
	base1+=("$b1")
done

if [ "$BENCH_PERF" = 1 ] && [ -f "$REDIS_DIR/perf.data" ]; then
	cp "$REDIS_DIR/perf.data" /tmp/txoutbox-bench-redis.perf.data
	bench_log "perf report of the worker (last run; kept in /tmp/txoutbox-bench-redis.perf.data): self time by library, then by symbol"
	{ perf report -i "$REDIS_DIR/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null |
		grep -E '^ +[0-9]' | head -n 8 || true; } >&2
	{ perf report -i "$REDIS_DIR/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null |
		grep -E '^ +[0-9]' | head -n 30 || true; } >&2
fi

txm=$(bench_median "${tx[@]}")
bm=$(bench_median "${base[@]}")
b1m=$(bench_median "${base1[@]}")
bench_result "9. redis dispatch, $N XADDs (1 route, 1 connection)" "$txm" "msg/s" \
	"redis-benchmark XADD, same fields and payload, -c 1 -P $PIPELINE" "$bm" \
	"$(bench_ratio "$txm" "$bm")" ">= 20000 msg/s and >= 0.5" \
	"commit to all succeeded; max_in_flight $PIPELINE, batch_size $BATCH, fsync=$FSYNC; worker CPU $(bench_median "${cpus[@]}")% of a core, $(bench_median "${per_cpu[@]}") msgs per worker CPU second; median of $REPS; runs: txoutbox$(printf ' %s' "${tx[@]}"), baseline$(printf ' %s' "${base[@]}")"
bench_result "9. redis dispatch vs a client without pipelining" "$txm" "msg/s" \
	"redis-benchmark XADD, -c 1 -P 1 (a reply awaited per XADD)" "$b1m" \
	"$(bench_ratio "$txm" "$b1m")" "report" "runs: $(printf ' %s' "${base1[@]}")"

bench_print_mine
