# bench/lib.sh: shared by the bench scripts (sourced, not run).
#
# Each script gets its own throwaway cluster: initdb in a private folder under
# /tmp, its own port, its unix socket in that folder (no TCP), run as the user
# postgres, txoutbox preloaded.  The extension is built from this repository
# and installed first (serialised with other sessions by a lock); bench/run
# does that once and tells the scripts to skip it (TXOUTBOX_BENCH_INSTALLED=1).
#
# Results: every script appends rows to $BENCH_RESULTS (TSV, see
# bench/table.py) and prints its own table; bench/run prints them all.

set -euo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BIN=$(pg_config --bindir)
if [ "$(id -u)" = 0 ]; then BENCH_AS=(runuser -u postgres --); else BENCH_AS=(); fi

bench_log() { printf '[%s %s] %s\n' "$(date -u +%H:%M:%S)" "${BENCH_NAME:-bench}" "$*" >&2; }

# Build and install the extension from this tree (once per bench/run).
bench_install() {
	if [ "${TXOUTBOX_BENCH_INSTALLED:-0}" = 1 ]; then return; fi
	local build
	build=$(mktemp -d /tmp/txoutbox-bench-build.XXXXXX)
	cp -a "$BENCH_SRC"/. "$build"/
	rm -rf "$build"/.git "$build"/results "$build"/tmp_check*
	bench_log "building txoutbox in $build"
	(cd "$build" && make -s with_llvm=no clean >/dev/null && make -s with_llvm=no >/dev/null)
	if [ "$(id -u)" = 0 ]; then
		(cd "$build" && flock /tmp/txoutbox-install.lock make -s with_llvm=no install >/dev/null)
	else
		(cd "$build" && flock /tmp/txoutbox-install.lock sudo make -s with_llvm=no install >/dev/null)
	fi
	rm -rf "$build"
	export TXOUTBOX_BENCH_INSTALLED=1
}

# A TCP port nobody listens on (the cluster listens on its socket only, but
# the port names the socket and the shared memory key).
bench_free_port() {
	python3 - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randint(20000, 40000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
EOF
}

# bench_start NAME [extra postgresql.conf lines...]
# Sets BENCH_DIR, PGHOST, PGPORT, PGDATABASE=bench, and stops the cluster at exit.
bench_start() {
	BENCH_NAME=$1
	shift
	BENCH_DIR=$(mktemp -d "/tmp/txoutbox-bench-$BENCH_NAME.XXXXXX")
	chmod 755 "$BENCH_DIR"
	[ "$(id -u)" = 0 ] && chown postgres "$BENCH_DIR"
	export PGHOST=$BENCH_DIR PGPORT
	PGPORT=$(bench_free_port)
	export PGDATABASE=bench PGUSER=postgres
	"${BENCH_AS[@]}" "$BENCH_BIN/initdb" -D "$BENCH_DIR/data" -U postgres --auth=trust \
		--no-sync -E UTF8 --locale=C >"$BENCH_DIR/initdb.log" 2>&1
	{
		echo "port = $PGPORT"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$BENCH_DIR'"
		echo "shared_preload_libraries = 'txoutbox'"
		echo "txoutbox.database = 'bench'"
		echo "max_worker_processes = 16"
		echo "shared_buffers = 512MB"
		echo "max_wal_size = 8GB"
		echo "checkpoint_timeout = 30min"
		echo "log_min_messages = warning"
		echo "logging_collector = off"
		for line in "$@"; do echo "$line"; done
	} >>"$BENCH_DIR/data/postgresql.conf"
	trap bench_stop EXIT
	"${BENCH_AS[@]}" "$BENCH_BIN/pg_ctl" -D "$BENCH_DIR/data" -l "$BENCH_DIR/server.log" -w start >/dev/null
	bench_psql -d postgres -c "CREATE DATABASE bench"
	bench_psql -c "CREATE EXTENSION txoutbox"
	# Restart so that the dispatchers start on a database that exists, then
	# wait until they are up.
	bench_restart
	bench_wait_workers
	bench_log "cluster up: $BENCH_DIR port $PGPORT"
}

bench_stop() {
	if [ -n "${BENCH_DIR:-}" ] && [ -f "$BENCH_DIR/data/postmaster.pid" ]; then
		"${BENCH_AS[@]}" "$BENCH_BIN/pg_ctl" -D "$BENCH_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ -n "${BENCH_DIR:-}" ] && [ "${BENCH_KEEP:-0}" != 1 ]; then
		rm -rf "$BENCH_DIR"
	fi
}

# Pin the xmin horizon of the bench cluster: a second session opens a
# REPEATABLE READ transaction, takes its snapshot and stays idle in it
# until bench_unpin (VACUUM can remove nothing meanwhile).  Fails when no
# such session shows.
bench_pin() {
	local fifo=$BENCH_DIR/pin.fifo
	mkfifo "$fifo"
	chmod 666 "$fifo"
	"${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" PGDATABASE=bench \
		psql -X -q -A -t <"$fifo" >"$BENCH_DIR/pin.out" 2>&1 &
	BENCH_PIN_PID=$!
	exec 3>"$fifo"
	echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM txoutbox.messages;" >&3
	sleep 1
	bench_pin_held || { bench_log "the pinning session holds no snapshot"; return 1; }
}

# Whether the session of bench_pin still holds its snapshot.
bench_pin_held() {
	bench_psql -c "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND backend_xmin IS NOT NULL" | grep -qx 1
}

# End the transaction of bench_pin, and its session.
bench_unpin() {
	echo "COMMIT;" >&3
	exec 3>&-
	wait "$BENCH_PIN_PID" || true
}

# psql on the bench cluster: quiet, unaligned, stop on error.
bench_psql() {
	"${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" PGDATABASE="${PGDATABASE}" \
		psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

# Set a reloadable server setting and reload.
bench_set() {
	bench_psql -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 0.3
}

# Restart the server (for settings that need it).
bench_restart() {
	"${BENCH_AS[@]}" "$BENCH_BIN/pg_ctl" -D "$BENCH_DIR/data" -l "$BENCH_DIR/server.log" -m fast -w restart >/dev/null
}

# Wait (up to 30 s) until txoutbox.workers dispatchers have a pid.
bench_wait_workers() {
	local want i
	want=$(bench_psql -c "SHOW txoutbox.workers")
	for i in $(seq 1 300); do
		if [ "$(bench_psql -c "SELECT count(pid) FROM txoutbox.worker_status()")" -ge "$want" ]; then
			return 0
		fi
		sleep 0.1
	done
	bench_log "dispatchers did not start"
	return 1
}

# Append one result row.  Columns: figure, value, unit, baseline name,
# baseline value, ratio, target, note.
bench_result() {
	local IFS=$'\t'
	echo "$*" >>"$BENCH_RESULTS"
}

# Median of the numbers given as arguments.
bench_median() {
	python3 -c 'import statistics,sys; print("%.1f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"
}

# a / b with 2 decimals.
bench_ratio() {
	python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print("%.2f" % (a/b) if b else "n/a")' "$1" "$2"
}

bench_results_init() {
	if [ -z "${BENCH_RESULTS:-}" ]; then
		BENCH_RESULTS=$(mktemp /tmp/txoutbox-bench-results.XXXXXX)
		BENCH_OWN_RESULTS=1
	fi
	export BENCH_RESULTS
	BENCH_MY_START=$(wc -l <"$BENCH_RESULTS")
}

# Print the rows this script added.
bench_print_mine() {
	tail -n +"$((BENCH_MY_START + 1))" "$BENCH_RESULTS" | python3 "$BENCH_SRC/bench/table.py"
	if [ "${BENCH_OWN_RESULTS:-0}" = 1 ]; then rm -f "$BENCH_RESULTS"; fi
}

# RSS (kB) of a pid from /proc/<pid>/status.
bench_rss_kb() {
	awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# Figure 1's setup, shared by enqueue.sh and profile_enqueue.sh: the table
# bench_plain, like txoutbox.messages (columns, defaults, constraints,
# indexes, storage parameters; id from gen_random_uuid()), checked alike, and
# the pgbench scripts in $BENCH_DIR/scripts: plain1, enq_select1, enq_from1
# (1 row per transaction), plain100, enq100 (100 rows).
bench_enqueue_setup() {
	local s=$BENCH_DIR/scripts P P100 same
	bench_psql <<'EOF'
CREATE TABLE bench_plain (LIKE txoutbox.messages INCLUDING ALL);
ALTER TABLE bench_plain ALTER COLUMN id SET DEFAULT gen_random_uuid();
DO $$
BEGIN
    EXECUTE format('ALTER TABLE bench_plain SET (%s)',
                   (SELECT array_to_string(reloptions, ', ') FROM pg_class
                     WHERE oid = 'txoutbox.messages'::regclass));
END
$$;
EOF

	# Check that the two tables are alike (indexes, constraints, defaults).
	same=$(bench_psql <<'EOF'
SELECT (SELECT count(*) FROM pg_index WHERE indrelid = 'bench_plain'::regclass)
     = (SELECT count(*) FROM pg_index WHERE indrelid = 'txoutbox.messages'::regclass)
   AND (SELECT count(*) FROM pg_constraint WHERE conrelid = 'bench_plain'::regclass)
     = (SELECT count(*) FROM pg_constraint WHERE conrelid = 'txoutbox.messages'::regclass)
   AND (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'txoutbox.messages'::regclass) = 0
EOF
	)
	[ "$same" = t ] || { bench_log "bench_plain is not like txoutbox.messages (indexes, constraints, triggers)"; return 1; }
	bench_log "bench_plain: $(bench_psql -c "SELECT count(*) FROM pg_index WHERE indrelid = 'bench_plain'::regclass") indexes, like txoutbox.messages"

	mkdir -p "$s"
	P="jsonb_build_object('order_id', :n::bigint, 'amount', 1999, 'currency', 'EUR')"
	P100="jsonb_build_object('order_id', :n::bigint + g, 'amount', 1999, 'currency', 'EUR')"
	{ echo '\set n random(1, 1000000000)'
	  echo "INSERT INTO bench_plain (topic, payload, max_attempts) VALUES ('orders.created', $P, 10);"; } >"$s/plain1.sql"
	{ echo '\set n random(1, 1000000000)'
	  echo "SELECT txoutbox.enqueue('orders.created', $P);"; } >"$s/enq_select1.sql"
	{ echo '\set n random(1, 1000000000)'
	  echo "SELECT 1 FROM txoutbox.enqueue('orders.created', $P);"; } >"$s/enq_from1.sql"
	{ echo '\set n random(1, 1000000000)'
	  echo "INSERT INTO bench_plain (topic, payload, max_attempts) SELECT 'orders.created', $P100, 10 FROM generate_series(1, 100) g;"; } >"$s/plain100.sql"
	{ echo '\set n random(1, 1000000000)'
	  echo "SELECT count(txoutbox.enqueue('orders.created', $P100)) FROM generate_series(1, 100) g;"; } >"$s/enq100.sql"
	chmod -R a+rX "$s"
}
