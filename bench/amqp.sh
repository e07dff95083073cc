#!/usr/bin/env bash
# bench/amqp.sh: the amqp publisher's throughput (issue 13).  N messages
# (default 50,000) through txoutbox to RabbitMQ, next to a baseline in the
# same run: a plain C client (bench/amqp_baseline.c, rabbitmq-c, compiled
# here) publishing the same messages the same way to the same exchange and
# queue.
#
# Broker: a private RabbitMQ node (test/rabbit-node, as the user postgres,
# loopback ports, data in a temp dir), a durable topic exchange bench.x and
# a durable classic queue bench.q bound to it, emptied before every run.
# Both sides publish persistent messages with "mandatory", publisher
# confirms, a window of WINDOW (default 1024) unconfirmed messages and at
# most 1 MB unconfirmed, the same body, properties and headers.
#
# txoutbox: N messages committed in one transaction to an amqp route with
# "max_in_flight": WINDOW; time from COMMIT returned until all are
# succeeded (polled every 100 ms), i.e. confirmed by the broker and marked.
# Baseline: time from the first publish until the last confirm.
# REPS (default 3) runs of each, interleaved; the medians are reported.
#
# Env: N, WINDOW, REPS, FSYNC (PostgreSQL's fsync, default on).
. "$(dirname "$0")/lib.sh"

N=${N:-50000}
WINDOW=${WINDOW:-1024}
REPS=${REPS:-3}
FSYNC=${FSYNC:-on}
BODY='{"order_id": 1, "total": 42.5, "lines": [1, 2, 3]}'

[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || { bench_log "rabbitmq-server is needed (test/install-deps)"; exit 1; }

bench_results_init
bench_install

# ---- the broker and the baseline client --------------------------------------------
RABBIT_DIR=$(mktemp -d /tmp/txoutbox-bench-rabbit.XXXXXX)
chmod 755 "$RABBIT_DIR"
[ "$(id -u)" = 0 ] && chown postgres "$RABBIT_DIR"
AMQP_PORT=$(bench_free_port)
DIST_PORT=$(bench_free_port)
EPMD_PORT=$(bench_free_port)
cc -O2 -o "$RABBIT_DIR/amqp_baseline" "$BENCH_SRC/bench/amqp_baseline.c" -lrabbitmq
cc -O2 -o "$RABBIT_DIR/amqp_tool" "$BENCH_SRC/test/amqp_tool.c" -lrabbitmq
cleanup_rabbit() {
	"${BENCH_AS[@]}" "$BENCH_SRC/test/rabbit-node" stop "$RABBIT_DIR/node" kill >/dev/null 2>&1 || true
	rm -rf "$RABBIT_DIR"
	bench_stop
}
trap cleanup_rabbit EXIT
bench_log "starting rabbitmq on 127.0.0.1:$AMQP_PORT"
"${BENCH_AS[@]}" "$BENCH_SRC/test/rabbit-node" start "$RABBIT_DIR/node" "$AMQP_PORT" "$DIST_PORT" "$EPMD_PORT" \
	txoutbox txoutbox
tool() { "$RABBIT_DIR/amqp_tool" -p "$AMQP_PORT" -u txoutbox -P txoutbox "$@"; }
tool wait 60
tool exchange bench.x topic
tool queue bench.q bench.x 'bench.#'
rabbit_version=$(ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-* 2>/dev/null | sed 's/.*rabbitmq_server-//' | head -n 1)
bench_log "rabbitmq $rabbit_version up"

# ---- txoutbox -----------------------------------------------------------------------
bench_start amqp "fsync = $FSYNC" "txoutbox.workers = 1" "txoutbox.batch_size = 1000" \
	"txoutbox.retention = 0"
trap cleanup_rabbit EXIT
bench_psql >/dev/null <<EOF
SELECT txoutbox.add_route('bench.amqp', 'amqp',
    '{"url": "amqp://txoutbox:txoutbox@127.0.0.1:$AMQP_PORT/", "exchange": "bench.x",
      "max_in_flight": $WINDOW}');
EOF
wpid=$(bench_psql -c "SELECT pid FROM txoutbox.worker_status() WHERE pid IS NOT NULL LIMIT 1")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

# one txoutbox run: prints msg/s and the worker's CPU share
run_txoutbox() {
	local t0 t1 c0 c1 queued
	bench_psql -c "TRUNCATE txoutbox.messages" >/dev/null
	bench_psql -c "SELECT count(*) FROM (SELECT txoutbox.enqueue('bench.amqp', '$BODY'::jsonb, message_key => 'key-' || i) FROM generate_series(1, $N) i) s" >/dev/null
	t0=$(date +%s.%N)
	c0=$(cpu_ticks "$wpid")
	while [ "$(bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE status = 'succeeded'")" -lt "$N" ]; do
		sleep 0.1
	done
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$wpid")
	queued=$(tool count bench.q)
	[ "$queued" -ge "$N" ] || { bench_log "only $queued of $N messages reached the queue"; return 1; }
	python3 -c "print('%.0f %.0f' % ($N / ($t1 - $t0), 100.0 * ($c1 - $c0) / $tck / ($t1 - $t0)))"
}

txo_runs=()
base_runs=()
cpus=()
for rep in $(seq 1 "$REPS"); do
	tool purge bench.q
	base=$("$RABBIT_DIR/amqp_baseline" "$AMQP_PORT" txoutbox txoutbox bench.x bench.amqp "$N" "$WINDOW" "$BODY")
	base_runs+=("$base")
	tool purge bench.q
	read -r txo cpu <<<"$(run_txoutbox)"
	txo_runs+=("$txo")
	cpus+=("$cpu")
	bench_log "run $rep: txoutbox $txo msg/s (worker CPU $cpu%), plain client $base msg/s"
done
txo=$(bench_median "${txo_runs[@]}")
base=$(bench_median "${base_runs[@]}")
cpu=$(bench_median "${cpus[@]}")
bench_result "11. amqp publish to RabbitMQ $rabbit_version, $N persistent msgs with confirms" "$txo" "msg/s" \
	"plain rabbitmq-c client, confirms, same window ($WINDOW msgs / 1 MB)" "$base" "$(bench_ratio "$txo" "$base")" \
	">= 0.5" "commit to all succeeded; median of $REPS; runs: txoutbox ${txo_runs[*]}, client ${base_runs[*]}; worker CPU ${cpu}%; durable classic queue; fsync=$FSYNC"

bench_print_mine
