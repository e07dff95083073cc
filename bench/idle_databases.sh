#!/usr/bin/env bash
# bench/idle_databases.sh: figure 14 (issue 16).  What idle databases cost:
# txoutbox.database = '*' with NDB (default 50) databases that have the
# extension and nothing to publish.  Over DURATION seconds (default 60) it
# reads the CPU time (/proc/<pid>/stat, utime + stime) of every dispatcher,
# of the launcher, and of the server's own background processes
# (checkpointer, background writer, walwriter, autovacuum launcher, ...)
# as a baseline; and the private memory (RssAnon) of a dispatcher against an
# idle backend of the same server (a session that ran one query).
. "$(dirname "$0")/lib.sh"

NDB=${NDB:-50}
DURATION=${DURATION:-60}
bench_results_init
bench_install
bench_start idle_databases "max_worker_processes = $((NDB + 16))" "autovacuum_naptime = 1min"
bench_set txoutbox.database '*'

bench_log "creating $NDB databases with the extension"
for i in $(seq 1 "$NDB"); do
	bench_psql -d postgres -c "CREATE DATABASE idle_$i"
	bench_psql -d "idle_$i" -c "CREATE EXTENSION txoutbox"
done
want=$((NDB + 1))	# and the bench database
for i in $(seq 1 600); do
	n=$(bench_psql -c "SELECT count(*) FROM txoutbox.worker_status() WHERE pid IS NOT NULL AND state = 'idle'")
	[ "$n" -ge "$want" ] && break
	sleep 0.1
done
[ "$n" -ge "$want" ] || { bench_log "only $n of $want dispatchers idle"; exit 1; }
sleep 5

pids_of() {	# pids whose /proc/<pid>/cmdline starts with "postgres: " and matches $1
	local p
	for p in $(pgrep -u postgres -f "$1"); do
		tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "^postgres: " && echo "$p"
	done
}
ticks() {	# utime + stime of the pids given, in clock ticks
	local p t=0
	for p in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
dispatchers=$(pids_of 'txoutbox worker')
launcher=$(pids_of 'txoutbox launcher')
server_own=$(pids_of 'postgres: .*(checkpointer|background writer|walwriter|autovacuum launcher|logical replication launcher)')
ndisp=$(echo "$dispatchers" | wc -w)
bench_log "$ndisp dispatchers, launcher $launcher; measuring for $DURATION s"

rounds0=$(bench_psql -c "SELECT sum(rounds) FROM txoutbox.worker_status()")
d0=$(ticks $dispatchers); l0=$(ticks $launcher); s0=$(ticks $server_own)
sleep "$DURATION"
d1=$(ticks $dispatchers); l1=$(ticks $launcher); s1=$(ticks $server_own)
rounds1=$(bench_psql -c "SELECT sum(rounds) FROM txoutbox.worker_status()")
hz=$(getconf CLK_TCK)

pct() { python3 -c 'import sys; print("%.2f" % (100.0 * float(sys.argv[1]) / float(sys.argv[2]) / float(sys.argv[3])))' "$1" "$hz" "$DURATION"; }
disp_pct=$(pct $((d1 - d0)))
launcher_pct=$(pct $((l1 - l0)))
server_pct=$(pct $((s1 - s0)))
per_round=$(python3 -c "print('%.2f' % (($rounds1 - $rounds0) / $ndisp / $DURATION))")

# private memory: every dispatcher's RssAnon, and an idle backend's
anon_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
disp_kb=$(for p in $dispatchers; do anon_kb "$p"; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
total_kb=$(for p in $dispatchers; do anon_kb "$p"; done | awk '{s+=$1} END {print s}')
coproc IDLE { "${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" psql -X -q -A -t -d idle_1; }
echo "SELECT pg_backend_pid();" >&"${IDLE[1]}"
read -r idle_pid <&"${IDLE[0]}"
sleep 0.5
idle_kb=$(anon_kb "$idle_pid")
echo '\q' >&"${IDLE[1]}"
wait "$IDLE_PID" 2>/dev/null || true

bench_result "14. $ndisp idle databases: CPU of their dispatchers" "$disp_pct" "% of a core" \
	"the server's own background processes, same window" "$server_pct" "$(bench_ratio "$disp_pct" "$server_pct")" "report" \
	"all dispatchers together over ${DURATION}s; launcher ${launcher_pct}%; $per_round rounds/s per dispatcher (a look for DROP DATABASE once a second)"
bench_result "14. idle database: private memory of a dispatcher" "$disp_kb" "kB" \
	"an idle backend (one query run)" "$idle_kb" "$(bench_ratio "$disp_kb" "$idle_kb")" "report" \
	"RssAnon, median of $ndisp dispatchers; all together $((total_kb / 1024)) MB"
bench_print_mine
