#!/usr/bin/env bash
# bench/breaker_outage.sh: figure 16 (issue 14).  An http endpoint answers
# 503 for OUTAGE seconds (default 30) with 1,000 messages queued, then 200:
# how many requests the endpoint saw during the outage, how many messages
# failed, and how long after its end the queue was drained.  Default
# settings (txoutbox.breaker_failures 5, cool-down 1 s doubling to 1 min;
# retries 200 ms doubling to 2 s, max_attempts 10).  Made to run on the code
# before the breaker too, through bench/compare.sh:
#   bench/compare.sh 6364f2d^ breaker_outage 1
. "$(dirname "$0")/lib.sh"

OUTAGE=${OUTAGE:-30}
N=${N:-1000}
bench_results_init
bench_install
bench_start breaker_outage "txoutbox.retry_base_delay = '200ms'" "txoutbox.retry_max_delay = '2s'" \
	"txoutbox.http_max_concurrency = 8"

sink=$BENCH_DIR/sink
mkdir -p "$sink"
echo '{"/down": {"status": 503, "body": "down for maintenance"}}' >"$sink/config.json"
python3 "$BENCH_SRC/test/http_sink.py" --log "$sink/log" --port-file "$sink/port" \
	--config "$sink/config.json" >"$sink/out" 2>&1 &
sink_pid=$!
trap 'kill $sink_pid 2>/dev/null || true; bench_stop' EXIT
for _ in $(seq 1 100); do [ -s "$sink/port" ] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$sink/port")/down"
bench_psql -c "SELECT txoutbox.add_route('down', 'http', '{\"url\": \"$url\"}')" >/dev/null

start=$(date +%s.%N)
bench_psql -c "SELECT count(txoutbox.enqueue('down', jsonb_build_object('i', i))) FROM generate_series(1, $N) i" >/dev/null
sleep "$OUTAGE"
echo '{"/down": {"status": 200}}' >"$sink/config.json.tmp" && mv "$sink/config.json.tmp" "$sink/config.json"
ended=$(date +%s.%N)
for _ in $(seq 1 1200); do
	left=$(bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE topic = 'down' AND status NOT IN ('succeeded', 'failed')")
	[ "$left" = 0 ] && break
	sleep 0.1
done
drained=$(date +%s.%N)

read -r during total <<<"$(python3 - "$sink/log" "$start" "$ended" <<'EOF'
import json, sys
log, start, ended = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
during = total = 0
for line in open(log):
    e = json.loads(line)
    if e["event"] == "request" and e["path"] == "/down":
        total += 1
        if start <= e["t"] < ended:
            during += 1
print(during, total)
EOF
)"
read -r ok failed maxatt <<<"$(bench_psql -F ' ' -c "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'), max(attempt_count) FROM txoutbox.messages WHERE topic = 'down'")"
drain_s=$(python3 -c "print('%.1f' % ($drained - $ended))")

bench_result "16. http endpoint down ${OUTAGE}s, $N msgs queued: requests during the outage" "$during" "requests" \
	"-" "-" "-" "report" "then 200: $ok succeeded, $failed failed, max attempt_count $maxatt, $total requests in all, queue drained ${drain_s}s after the outage"
bench_result "16. http endpoint down ${OUTAGE}s: messages failed" "$failed" "messages" "-" "-" "-" "report" "of $N"
bench_print_mine
