#!/usr/bin/env bash
# bench/staying_power.sh: figures 5, 6 and 7 (issue 5).  SP_N messages
# (default 1,000,000) end to end through a notify route, in ROUNDS rounds
# (default 10): each round commits SP_N/ROUNDS messages in one transaction
# and times commit -> last notification received (bench/pgnotify.pl, as in
# notify_dispatch.sh).  Succeeded messages stay in the table (retention is
# 7 days), so each round claims past everything before it.
#
# Figure 5: throughput of the last round (tenth) vs the first; dead tuples
#   and table size at the end.
# Figure 6 (PIN_XMIN=1): the same while another session holds a REPEATABLE
#   READ transaction open, idle, with its snapshot taken before the first
#   round, for the whole run (VACUUM can remove nothing from then on).
#   Compared with the unpinned run of the same invocation.
# Figure 7: the worker's memory at the start and the end of the run
#   (/proc/<pid>/status: VmRSS, which counts the shared buffers the worker
#   touched, and RssAnon, its private memory).
#
# PIN_XMIN: "0 1" (default: both runs, each on a fresh cluster), "0" or "1".
# Env: SP_N, ROUNDS, BATCH (txoutbox.batch_size, default 1000), FSYNC.
. "$(dirname "$0")/lib.sh"

SP_N=${SP_N:-1000000}
ROUNDS=${ROUNDS:-10}
BATCH=${BATCH:-1000}
PIN_XMIN=${PIN_XMIN:-0 1}
FSYNC=${FSYNC:-on}
PER=$((SP_N / ROUNDS))
export BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}

bench_results_init
bench_install

pn() { "${BENCH_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" PGDATABASE=bench BENCH_TIMEOUT="$BENCH_TIMEOUT" \
	perl "$BENCH_SRC/bench/pgnotify.pl" "$@"; }
worker_pid() { bench_psql -c "SELECT pid FROM txoutbox.worker_status() WHERE pid IS NOT NULL LIMIT 1"; }
mem() { awk '/^(VmRSS|RssAnon):/ {printf "%s ", $2}' "/proc/$1/status"; }

declare -A rounds first last first3 last3 total dead size idx rss0 rss1 anon0 anon1

one_run() {
	local pin=$1 r wpid secs rates=()
	bench_start "staying$pin" "fsync = $FSYNC" "txoutbox.workers = 1" "txoutbox.batch_size = $BATCH"
	bench_psql -c "SELECT txoutbox.add_route('bench.notify', 'notify', '{\"channel\": \"bench\"}') IS NOT NULL" >/dev/null
	if [ "$pin" = 1 ]; then bench_pin || return 1; fi
	wpid=$(worker_pid)
	read -r rss0[$pin] anon0[$pin] <<<"$(mem "$wpid")"
	local t_start
	t_start=$(date +%s.%N)
	for r in $(seq 1 "$ROUNDS"); do
		secs=$(pn throughput txoutbox "$PER" "$BATCH")
		rates+=("$(python3 -c "print('%.1f' % ($PER / $secs))")")
		bench_log "pin=$pin round $r: ${rates[-1]} msg/s"
	done
	total[$pin]=$(python3 -c "print('%.1f' % ($SP_N / ($(date +%s.%N) - $t_start)))")
	rounds[$pin]=$(printf '%s ' "${rates[@]}" | python3 -c 'import sys; print(" ".join("%.1fk" % (float(x) / 1000) for x in sys.stdin.read().split()))')
	first[$pin]=${rates[0]}
	last[$pin]=${rates[-1]}
	# the same question with less noise: median of the first 3 and last 3 rounds
	first3[$pin]=$(bench_median "${rates[@]:0:3}")
	last3[$pin]=$(bench_median "${rates[@]: -3}")
	[ "$(worker_pid)" = "$wpid" ] || bench_log "the worker restarted during the run"
	read -r rss1[$pin] anon1[$pin] <<<"$(mem "$wpid")"
	local ok
	ok=$(bench_psql -c "SELECT count(*) FROM txoutbox.messages WHERE status = 'succeeded'")
	[ "$ok" = "$SP_N" ] || { bench_log "only $ok of $SP_N succeeded"; return 1; }
	# dead tuples counted by scanning the table (pgstattuple), not from the
	# statistics, which lag
	if bench_psql -c "CREATE EXTENSION IF NOT EXISTS pgstattuple" >/dev/null 2>&1; then
		dead[$pin]=$(bench_psql -c "SELECT dead_tuple_count FROM pgstattuple('txoutbox.messages')")
	else
		sleep 3
		dead[$pin]=$(bench_psql -c "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'txoutbox.messages'::regclass")
	fi
	size[$pin]=$(bench_psql -c "SELECT pg_size_pretty(pg_total_relation_size('txoutbox.messages'))")
	idx[$pin]=$(bench_psql -c "SELECT pg_size_pretty(pg_relation_size('txoutbox.messages_claim_idx'))")
	if [ "$pin" = 1 ]; then
		bench_pin_held || bench_log "the pinning session lost its snapshot before the end"
		bench_unpin
	fi
	bench_stop
	trap - EXIT
	BENCH_DIR=
}

for pin in $PIN_XMIN; do
	one_run "$pin"
done

for pin in $PIN_XMIN; do
	if [ "$pin" = 0 ]; then label="5. staying power"; else label="6. pinned xmin (idle REPEATABLE READ txn)"; fi
	bench_result "$label, $SP_N msgs in $ROUNDS rounds: last round" "${last[$pin]}" "msg/s" \
		"first round" "${first[$pin]}" "$(bench_ratio "${last[$pin]}" "${first[$pin]}")" ">= 0.9" \
		"batch_size $BATCH; end: ${dead[$pin]} dead tuples, table+indexes ${size[$pin]}, claim index ${idx[$pin]}; rounds (msg/s): ${rounds[$pin]}"
	bench_result "$label: median of the last 3 rounds" "${last3[$pin]}" "msg/s" \
		"median of the first 3 rounds" "${first3[$pin]}" "$(bench_ratio "${last3[$pin]}" "${first3[$pin]}")" ">= 0.9" \
		"same rounds; a single round varies by up to +-20% within a run here"
	bench_result "7. worker RSS, $( [ "$pin" = 1 ] && echo pinned || echo unpinned ) run: end (start)" \
		"$(( ${rss1[$pin]} / 1024 ))" "MB" "start of run" "$(( ${rss0[$pin]} / 1024 ))" \
		"$(bench_ratio "${rss1[$pin]}" "${rss0[$pin]}")" "" \
		"private (RssAnon) $(( ${anon0[$pin]} / 1024 )) -> $(( ${anon1[$pin]} / 1024 )) MB; VmRSS includes shared buffers touched"
done
case " $PIN_XMIN " in
*" 0 "*) both=$([[ " $PIN_XMIN " == *" 1 "* ]] && echo 1 || echo 0) ;;
*) both=0 ;;
esac
case $both in
1)
	bench_result "6. pinned xmin: whole run vs unpinned run" "${total[1]}" "msg/s" "unpinned run" "${total[0]}" \
		"$(bench_ratio "${total[1]}" "${total[0]}")" ">= 0.8" "$SP_N msgs; incl. enqueue time of each round"
	bench_result "6. pinned xmin: last round vs unpinned last round" "${last[1]}" "msg/s" "unpinned last round" "${last[0]}" \
		"$(bench_ratio "${last[1]}" "${last[0]}")" ">= 0.8" ""
	;;
esac

bench_print_mine
