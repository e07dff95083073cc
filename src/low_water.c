/*-------------------------------------------------------------------------
 *
 * low_water.c
 *	  The dispatcher's low-water mark: a time before which no message it
 *	  could claim is available, so that its claim scan starts there.
 *
 * Why: every claim walks messages_claim_idx in available_at order.  Entries
 * of messages that finished stay in that index until VACUUM removes them,
 * and while another session holds an old snapshot (an idle REPEATABLE READ
 * transaction, a lagging replica) VACUUM cannot, nor can the scan mark them
 * dead.  Without a mark each claim walks every message finished since that
 * snapshot was taken: throughput falls as the run goes on.
 *
 * The mark is the least of:
 *	- the first unfinished message on any enabled route (also one with no
 *	  room this round: it will have later) that this round's snapshot
 *	  sees, from the previous mark on (an incremental refresh walks only
 *	  what finished since);
 *	- the start of every transaction that holds an xid now (it may have
 *	  enqueued, and commit later with an available_at from its start);
 *	- the clock, read before those two.
 * A message committed later cannot be available before the mark: enqueue()
 * takes its available_at from the clock after its transaction has an xid,
 * the dispatcher's retries are later than the clock, and every other way to
 * make a message available at a time already past (replay(), an explicit
 * available_at, mark_failed() or claim() from SQL with past times) bumps
 * rescan_generation at commit, which makes the next refresh start from the
 * beginning.  So do a change of routes, and, as a safety net for what
 * nothing announces (two-phase commits, a clock stepping back, rows edited
 * by hand), the passing of max(poll_interval, 10 x the last full refresh's
 * duration, at most 10 s).  The mark is only a hint of where to start: a
 * message behind it is claimed after the next full refresh, never lost.
 *
 * The routes with room: a route with no room this round (paused, held,
 * out of tokens, full) is left out of the claim, but its messages are in
 * the index all the same.  Behind a paused route's backlog, a claim from
 * the mark would walk all of it every round before reaching the messages of
 * the routes that flow (measured: 4x slower, bench/paused_backlog.sh).  So
 * the worker also keeps a second mark, for the routes the round claims
 * from (low_water_room_mark): the first unfinished message of theirs from
 * the previous such mark on, or from the mark above when that set of
 * routes changed (a route got room again: its messages may lie anywhere
 * after the mark), when the mark above was refreshed in full for a rescan
 * or a change of routes or found a message behind where it was (what the
 * safety net catches), and on its own safety-net period (as above, from
 * its own cost: that walk passes the backlog of the routes left out).  The
 * set is compared with a copy of its arrays; the second mark is the first
 * when the two sets are alike.
 *
 * A mark is per process: the worker keeps one for its routes, and a
 * session calling claim() one for every message it can see (afresh when
 * its bound tenant changes), so a consumer's claims in a loop walk only what
 * finished since its last claim.  dispatch() in a session, and any claim
 * in a REPEATABLE READ or SERIALIZABLE transaction, scan from the start.
 * A session's first claim() pays for one full walk (as every claim did
 * before); reading the backends' status (oldest_writer_start) also drops
 * the session's snapshot of pg_stat_activity, as stats_fetch_consistency
 * = none would.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_compat.h"

#include "access/transam.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/backend_status.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "low_water.h"
#include "outbox.h"
#include "settings.h"
#include "shmem.h"

/* the arrays of a RouteFilter (filter_arrays) */
#define FILTER_ARRAYS 5

/* the full-refresh period grows with its cost up to this (10 s) */
#define FULL_REFRESH_MAX_US (10 * USECS_PER_SEC)

static struct
{
	TimestampTz mark;			/* 0: none yet */
	uint64		rescan_seen;	/* rescan_generation at the last full refresh */
	uint32		routes_hash;	/* the routes at the last full refresh */
	TimestampTz last_full;
	int64		full_cost_us;
	uint64		nannounced;		/* full refreshes for a rescan or new routes,
								 * or that found a message behind the mark */
	TimestampTz clock;			/* read by the last low_water_mark() */
	TimestampTz writers;		/* likewise */
	/* the mark of the routes with room (low_water_room_mark) */
	TimestampTz room_mark;		/* 0: none */
	Datum		room_set[FILTER_ARRAYS];	/* its routes' arrays (in TopMemoryContext) */
	uint64		room_announced; /* nannounced when room_mark was computed */
	TimestampTz room_last_full; /* when room_mark was last computed from mark */
	int64		room_full_cost_us;
} low_water;

/*
 * The start of the oldest transaction in this database holding an xid, read
 * now (not from a copy of the backends' status taken earlier).
 */
static TimestampTz
oldest_writer_start(void)
{
	TimestampTz oldest = DT_NOEND;
	int			n;

	pgstat_clear_snapshot();
	n = pgstat_fetch_stat_numbackends();

	for (int i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *l = compat_local_beentry(i);

		if (l == NULL || !TransactionIdIsValid(l->backend_xid) ||
			l->backendStatus.st_procpid == MyProcPid ||
			l->backendStatus.st_databaseid != MyDatabaseId)
			continue;
		if (l->backendStatus.st_xact_start_timestamp == 0)
			return DT_NOBEGIN;	/* unknown (track_activities off) */
		oldest = Min(oldest, l->backendStatus.st_xact_start_timestamp);
	}
	return oldest;
}

/* A hash of an array's bytes (of any element type), 0 for none. */
static uint32
hash_text_array(Datum a)
{
	if (a == (Datum) 0)
		return 0;
	return hash_bytes((const unsigned char *) VARDATA_ANY(DatumGetPointer(a)),
					  VARSIZE_ANY_EXHDR(DatumGetPointer(a)));
}

/*
 * Whether a full refresh last made at last_full, which took cost_us, is due
 * again at clock (the safety net of the file header).
 */
static bool
refresh_due(TimestampTz last_full, int64 cost_us, TimestampTz clock)
{
	return clock < last_full ||	/* the clock stepped back */
		clock - last_full >= Max((int64) txoutbox_poll_interval_ms * 1000,
								 Min(10 * cost_us, FULL_REFRESH_MAX_US));
}

/* The arrays (or 0s) of routes, in a fixed order. */
static void
filter_arrays(const RouteFilter *routes, Datum *arrays)
{
	arrays[0] = routes->exact;
	arrays[1] = routes->prefixes;
	arrays[2] = routes->fanout_ids;
	arrays[3] = routes->overlap_patterns;
	arrays[4] = routes->overlap_room;
}

/* Whether the arrays (or 0s) of kept and set are the same bytes. */
static bool
same_arrays(const Datum *kept, const Datum *set)
{
	for (int i = 0; i < FILTER_ARRAYS; i++)
		if ((kept[i] == (Datum) 0 || set[i] == (Datum) 0) ? kept[i] != set[i] :
			!datumIsEqual(kept[i], set[i], false, -1))
			return false;
	return true;
}

/* Replace the arrays in kept by copies of set's, in TopMemoryContext. */
static void
keep_arrays(Datum *kept, const Datum *set)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	for (int i = 0; i < FILTER_ARRAYS; i++)
	{
		Datum		copy = set[i] == (Datum) 0 ? (Datum) 0 : datumCopy(set[i], false, -1);

		if (kept[i] != (Datum) 0)
			pfree(DatumGetPointer(kept[i]));
		kept[i] = copy;
	}
	MemoryContextSwitchTo(old);
}

/* A hash of a set of routes, as the claim names them (overlap aside). */
static uint32
hash_routes(const RouteFilter *routes)
{
	return hash_combine(hash_combine(hash_text_array(routes->exact),
									 hash_text_array(routes->prefixes)),
						hash_text_array(routes->fanout_ids));
}

/*
 * Forget this process's mark: the next low_water_mark() scans from the
 * start.  For a transaction that made a message available in the past
 * (wakeup_rescan_at_commit): the other processes rescan once it commits,
 * and a claim later in the same transaction must not start past it.
 */
void
low_water_forget(void)
{
	low_water.mark = 0;
}

/*
 * The claim scan's start for this round (see the file header): DT_NOBEGIN
 * or a mark.  Call at the start of the round's transaction, connected to
 * SPI, before its claim; routes: every enabled route (all 0: every
 * message); tenant: the tenant the claim is
 * bound to, or NULL (a change of it starts afresh: under a forced row
 * policy what the claim sees changes with it).
 */
TimestampTz
low_water_mark(const RouteFilter *routes, const char *tenant)
{
	TimestampTz clock;
	TimestampTz writers;
	TimestampTz first;
	uint64		generation;
	uint32		routes_hash;
	bool		full;
	bool		announced;

	/* the snapshot of a later statement must be newer than what we read */
	if (IsolationUsesXactSnapshot())
		return DT_NOBEGIN;

	clock = GetCurrentTimestamp();
	generation = pg_atomic_read_u64(&txoutbox_shared->rescan_generation);
	routes_hash = hash_routes(routes);
	if (tenant != NULL)
		routes_hash = hash_combine(routes_hash,
								   hash_bytes((const unsigned char *) tenant, strlen(tenant)));
	announced = low_water.mark == 0 ||
		generation != low_water.rescan_seen ||
		routes_hash != low_water.routes_hash;
	full = announced || refresh_due(low_water.last_full, low_water.full_cost_us, clock);

	writers = oldest_writer_start();
	first = outbox_first_unfinished(full ? DT_NOBEGIN : low_water.mark, routes);
	if (full)
	{
		low_water.rescan_seen = generation;
		low_water.routes_hash = routes_hash;
		low_water.last_full = clock;
		low_water.full_cost_us = GetCurrentTimestamp() - clock;
		if (announced || first < low_water.mark)
			low_water.nannounced++;
	}
	low_water.clock = clock;
	low_water.writers = writers;
	low_water.mark = Min(clock, Min(writers, first));
	return low_water.mark;
}

/*
 * The worker's claim start for the routes with room this round (routes,
 * as the claim names them; see the file header), right after
 * low_water_mark() returned mark for every enabled route (whose hash it
 * keeps in routes_hash).  Both are safe starts for these routes, so the
 * later one is.
 */
TimestampTz
low_water_room_mark(TimestampTz mark, const RouteFilter *routes)
{
	Datum		set[FILTER_ARRAYS];
	TimestampTz start = GetCurrentTimestamp();
	bool		full;
	TimestampTz from;
	TimestampTz first;

	/* (a collision of the hashes costs only speed: mark is safe) */
	if (mark == DT_NOBEGIN || hash_routes(routes) == low_water.routes_hash)
	{
		low_water.room_mark = 0;
		return mark;
	}
	filter_arrays(routes, set);
	full = low_water.room_mark == 0 || !same_arrays(low_water.room_set, set) ||
		low_water.room_announced != low_water.nannounced ||
		refresh_due(low_water.room_last_full, low_water.room_full_cost_us, low_water.clock);
	from = full ? mark : Max(mark, low_water.room_mark);
	first = outbox_first_unfinished(from, routes);
	if (full)
	{
		keep_arrays(low_water.room_set, set);
		low_water.room_announced = low_water.nannounced;
		low_water.room_last_full = low_water.clock;
		low_water.room_full_cost_us = GetCurrentTimestamp() - start;
	}
	low_water.room_mark = Max(mark, Min(low_water.clock, Min(low_water.writers, first)));
	return low_water.room_mark;
}
