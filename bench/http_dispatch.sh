#!/usr/bin/env bash
# bench/http_dispatch.sh: figures 3 and 4 (http) of issue 5, the benchmark of
# issue 4.  Webhook throughput and latency against a fast local server.
#
# Server: nginx on loopback, one worker process, keep-alive, `return 200` for
# every POST (the body is read and dropped).
# Baseline in the same run: that server's ceiling, measured by wrk with
# CONCURRENCY connections POSTing the same body (what any client could get).
#
# Throughput: N messages (default 50,000) committed in one transaction to an
# http route pointing at nginx; time from COMMIT returned until all are
# succeeded (polled every 100 ms).  Also the dispatcher's CPU share of one
# core over that time (utime + stime from /proc/<pid>/stat).
#
# Latency: LAT_N messages, one per transaction, GAP_MS apart, to a route whose
# nginx location logs $msec (when nginx finished the request, wall clock) and
# the webhook-id.  The commit time of each enqueuing transaction is
# pg_xact_commit_timestamp() of its xid (track_commit_timestamp = on), on the
# same wall clock.  Latency = nginx $msec - commit time.  Idle, then while
# pgbench enqueues LOAD_RATE messages/s to another http route.
#
# Env: N, CONCURRENCY (default 32), WRK_SECONDS (10), LAT_N (300; 0 skips the
# latency part),
# GAP_MS (20), LOAD_RATE (1000; 0 skips), FSYNC (on), WORKERS (1; the worker
# CPU figure is the first dispatcher's), BENCH_PERF (1: perf records the first
# dispatcher through the throughput part and the top functions, self and
# inclusive, go to stderr; needs perf, from linux-perf).
. "$(dirname "$0")/lib.sh"

N=${N:-50000}
CONCURRENCY=${CONCURRENCY:-32}
WRK_SECONDS=${WRK_SECONDS:-10}
LAT_N=${LAT_N:-300}
GAP_MS=${GAP_MS:-20}
LOAD_RATE=${LOAD_RATE:-1000}
FSYNC=${FSYNC:-on}
WORKERS=${WORKERS:-1}
BODY='{"order_id": 1, "total": 42.5, "lines": [1, 2, 3]}'

for tool in nginx wrk; do
	command -v "$tool" >/dev/null || { bench_log "$tool is needed (apt-get install nginx-light wrk)"; exit 1; }
done

bench_results_init
bench_install

# ---- the sink -----------------------------------------------------------------
NGINX_DIR=$(mktemp -d /tmp/txoutbox-bench-nginx.XXXXXX)
chmod 755 "$NGINX_DIR"
NGINX_PORT=$(bench_free_port)
cat >"$NGINX_DIR/nginx.conf" <<EOF
worker_processes 1;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    log_format lat '\$msec \$http_webhook_id';
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /lat { access_log $NGINX_DIR/lat.log lat; return 200 "ok"; }
        location / { return 200 "ok"; }
    }
}
EOF
nginx -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR" -e "$NGINX_DIR/error.log"
cleanup_nginx() {
	[ -f "$NGINX_DIR/nginx.pid" ] && kill "$(cat "$NGINX_DIR/nginx.pid")" 2>/dev/null || true
	rm -rf "$NGINX_DIR"
	bench_stop
}
trap cleanup_nginx EXIT
sleep 0.3

# ---- baseline: the server's ceiling -------------------------------------------------
cat >"$NGINX_DIR/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF
bench_log "wrk: $CONCURRENCY connections, ${WRK_SECONDS}s"
ceiling=$(wrk -t2 -c"$CONCURRENCY" -d"${WRK_SECONDS}s" -s "$NGINX_DIR/post.lua" \
	"http://127.0.0.1:$NGINX_PORT/x" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')
bench_log "server ceiling: $ceiling req/s"

# ---- txoutbox end to end ------------------------------------------------------------
bench_start http "fsync = $FSYNC" "txoutbox.workers = $WORKERS" "txoutbox.batch_size = 1000" \
	"txoutbox.http_max_concurrency = $CONCURRENCY" "track_commit_timestamp = on" \
	"txoutbox.retention = 0"
trap cleanup_nginx EXIT
bench_psql >/dev/null <<EOF
SELECT txoutbox.add_route('bench.http', 'http', '{"url": "http://127.0.0.1:$NGINX_PORT/x", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}');
SELECT txoutbox.add_route('bench.lat', 'http', '{"url": "http://127.0.0.1:$NGINX_PORT/lat", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}');
SELECT txoutbox.add_route('bench.load', 'http', '{"url": "http://127.0.0.1:$NGINX_PORT/x"}');
EOF
wpid=$(bench_psql -c "SELECT pid FROM txoutbox.worker_status() WHERE pid IS NOT NULL LIMIT 1")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

bench_log "enqueueing $N messages in one transaction"
bench_psql -c "SELECT count(*) FROM (SELECT txoutbox.enqueue('bench.http', '$BODY'::jsonb) FROM generate_series(1, $N)) s" >/dev/null
perfpid=
if [ "${BENCH_PERF:-0}" = 1 ]; then
	perf record -q -g -o "$BENCH_DIR/http.perf" -p "$wpid" >/dev/null 2>&1 &
	perfpid=$!
	sleep 0.5
fi
t0=$(date +%s.%N)
c0=$(cpu_ticks "$wpid")
while [ "$(bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE topic = 'bench.http' AND status = 'succeeded'")" -lt "$N" ]; do
	sleep 0.1
done
t1=$(date +%s.%N)
c1=$(cpu_ticks "$wpid")
if [ -n "$perfpid" ]; then
	kill -INT "$perfpid"
	wait "$perfpid" || true
	{
		echo "== perf: the dispatcher, self time"
		perf report -q -i "$BENCH_DIR/http.perf" --no-children --sort symbol --percent-limit 1 -g none 2>/dev/null | grep -v '^$' | head -n 40 || true
		echo "== perf: the dispatcher, inclusive (children)"
		perf report -q -i "$BENCH_DIR/http.perf" --children --sort symbol --percent-limit 4 -g none 2>/dev/null | grep -v '^$' | head -n 40 || true
	} >&2
fi
rate=$(python3 -c "print('%.0f' % ($N / ($t1 - $t0)))")
cpu=$(python3 -c "print('%.0f' % (100.0 * ($c1 - $c0) / $tck / ($t1 - $t0)))")
bench_log "txoutbox: $rate msg/s, worker CPU $cpu% of a core"
bench_result "3. HTTP dispatch, $N signed webhooks, $WORKERS worker(s)" "$rate" "msg/s" "wrk ceiling of the same server ($CONCURRENCY conns)" \
	"$ceiling" "$(bench_ratio "$rate" "$ceiling")" ">= 25000 msg/s and >= 0.3" "worker CPU ${cpu}% of one core"

# ---- latency: commit to request received ------------------------------------------------
# $1: label.  One psql session: LAT_N transactions GAP_MS apart.
measure_latency() {
	local label=$1 stats
	bench_psql -c "TRUNCATE txoutbox.messages" >/dev/null
	: >"$NGINX_DIR/lat.log"
	python3 - "$LAT_N" "$GAP_MS" <<'PY' | bench_psql >/dev/null
import sys
n, gap = int(sys.argv[1]), float(sys.argv[2]) / 1000
for i in range(n):
    print("BEGIN;")
    print("SELECT 1 FROM txoutbox.enqueue('bench.lat', jsonb_build_object('xid', txid_current()::text, 'seq', %d));" % i)
    print("COMMIT;")
    print("SELECT pg_sleep(%f);" % gap)
PY
	while [ "$(wc -l <"$NGINX_DIR/lat.log")" -lt "$LAT_N" ]; do sleep 0.1; done
	stats=$({
		echo "CREATE TEMP TABLE lat (at numeric, id uuid);"
		echo "COPY lat FROM STDIN WITH (DELIMITER ' ');"
		cat "$NGINX_DIR/lat.log"
		echo '\.'
		cat <<'SQL'
WITH d AS (
  SELECT (l.at - extract(epoch FROM pg_xact_commit_timestamp(((m.payload ->> 'xid')::bigint % 4294967296)::text::xid))) * 1000 AS ms
    FROM lat l JOIN txoutbox.messages m ON m.id = l.id)
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ' ||
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1) || ' ' ||
       round(max(ms)::numeric, 1) || ' ' || count(*)
  FROM d;
SQL
	} | bench_psql)
	read -r p50 p99 max count <<<"$stats"
	bench_log "http latency $label: p50 $p50 ms, p99 $p99 ms, max $max ms ($count messages)"
	bench_result "4. http latency, $label (commit to request received)" "$p50 / $p99 / $max" "ms p50/p99/max" \
		"" "" "" "p50 < 5 ms idle" "$count messages, ${GAP_MS} ms apart; nginx \$msec vs commit timestamp"
}

[ "$LAT_N" -gt 0 ] || { bench_print_mine; exit 0; }
measure_latency idle

if [ "$LOAD_RATE" -gt 0 ]; then
	cat >"$NGINX_DIR/load.sql" <<EOF
SELECT 1 FROM txoutbox.enqueue('bench.load', '$BODY');
EOF
	chmod 644 "$NGINX_DIR/load.sql"
	"${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" pgbench -n -M prepared -c 2 -R "$LOAD_RATE" \
		-T 600 -f "$NGINX_DIR/load.sql" bench >/dev/null 2>&1 &
	load_pid=$!
	sleep 2
	measure_latency "under load ($LOAD_RATE msg/s to another http route)"
	kill "$load_pid" 2>/dev/null || true
	wait "$load_pid" 2>/dev/null || true
fi

bench_print_mine
