/*-------------------------------------------------------------------------
 *
 * dispatch_worker.c
 *	  The worker's dispatch round, in short transactions of its own, and the
 *	  worker's transaction bracket.
 *
 * A round is at most three short transactions and no transaction during
 * network I/O:
 *	1. claim: lock the claimable messages (from the low-water mark; no more
 *	   than the routes may take now), keep what each route may take
 *	   (dispatch_limit; the rest stay untouched), publish those of
 *	   in-transaction publishers (notify) and mark them, so they commit
 *	   together; lease those of after-lease publishers (function) and of
 *	   network publishers; commit.
 *	2. after-lease publishers, each message in a subtransaction, and their
 *	   marks; commit.  The attempt was counted in 1, so user code that ends
 *	   the process cannot be retried more often than its attempts allow.
 *	3. network publishers get their messages with no transaction open and
 *	   keep them in flight across rounds; what finished (now, or since the
 *	   last round) is marked in one more short transaction (worker_collect).
 *
 * Memory: everything a round keeps across its transactions is allocated in
 * the context that was current on entry; the worker resets it every round.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "dispatch.h"
#include "low_water.h"
#include "netpub.h"

/*
 * Take a share lock on the extension, so that a DROP EXTENSION waits for
 * this transaction rather than deadlocking with it (it locks the extension
 * first, then our tables, in its own order).  ERROR when it is not there,
 * or was dropped while we waited.
 */
static void
lock_extension(void)
{
	Oid			ext = get_extension_oid("txoutbox", true);

	if (OidIsValid(ext))
	{
		LockDatabaseObject(ExtensionRelationId, ext, 0, AccessShareLock);
		if (get_extension_oid("txoutbox", true) == ext)
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension txoutbox is not installed")));
}

/*
 * Start a worker transaction with SPI and a snapshot, holding the extension
 * (see lock_extension); returns the memory context to go back to when it
 * commits (worker_xact_commit).
 */
MemoryContext
worker_xact_begin(const char *activity)
{
	MemoryContext cxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	lock_extension();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	return cxt;
}

/* Commit what worker_xact_begin started, and return to cxt. */
void
worker_xact_commit(MemoryContext cxt)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
}

/*
 * Mark the items of batches (those not in flight) and of what netpub
 * finished since the last collection, in one short transaction; count what
 * is still in flight.  Called with no transaction open.
 */
static void
mark_finished(const DispatchOptions *opts, DispatchCounts *counts,
			  PublishBatch *batches, int nbatches)
{
	MemoryContext cxt = CurrentMemoryContext;
	PublishBatch collected = {NULL, NULL, 0};
	bool		any = false;
	int			b,
				i;

	for (b = 0; b < nbatches; b++)
		for (i = 0; i < batches[b].n && !any; i++)
			any = batches[b].items[i].outcome != PUBLISH_IN_FLIGHT;
	collected.n = netpub_collect(&collected.items);
	counts->in_flight = netpub_in_flight();
	if (!any && collected.n == 0)
		return;

	worker_xact_begin("txoutbox: recording outcomes");
	for (b = 0; b < nbatches; b++)
		dispatch_mark(&batches[b], opts, false, counts);
	if (collected.n > 0)
		dispatch_mark(&collected, opts, false, counts);
	worker_xact_commit(cxt);
}

/*
 * The leased messages of after-lease publishers being published now (in
 * TopMemoryContext): if an ERROR ends the round, they are nobody's, and the
 * dispatcher takes them back (worker_interrupted_leases).
 */
static pg_uuid_t *remembered = NULL;
static int	nremembered = 0;
static int	max_remembered = 0;

static void
remember_after_lease(const PublishBatch *batches, int nbatches)
{
	int			n = 0;
	int			b,
				i;

	for (b = 0; b < nbatches; b++)
		n += batches[b].n;
	if (n > max_remembered)
	{
		if (remembered)
			pfree(remembered);
		remembered = MemoryContextAlloc(TopMemoryContext, sizeof(pg_uuid_t) * n);
		max_remembered = n;
	}
	nremembered = 0;
	for (b = 0; b < nbatches; b++)
		for (i = 0; i < batches[b].n; i++)
			remembered[nremembered++] = batches[b].items[i].msg->id;
}

/*
 * The ids of the after-lease messages a round that ended in an ERROR was
 * publishing (valid until the next round); forgotten here once taken.
 */
int
worker_interrupted_leases(pg_uuid_t **ids)
{
	int			n = nremembered;

	*ids = remembered;
	nremembered = 0;
	return n;
}

/* Run one round (see the file header).  Called with no transaction open. */
void
worker_round(const DispatchOptions *opts, DispatchCounts *counts)
{
	MemoryContext round_cxt = CurrentMemoryContext;
	RouteSet	routes;
	ClaimRequest req;
	ClaimedRound round;
	PublishBatch *network;
	PublishBatch *after_lease;
	int			nnetwork = 0;
	int			nafter = 0;
	TimestampTz now;
	int			b;

	dispatch_counts_init(counts);

	/* 1: claim, publish in the transaction, lease the rest */
	worker_xact_begin("txoutbox: claim and publish");
	routes_load(&routes, round_cxt);
	now = GetCurrentTransactionStartTimestamp();
	memset(&req, 0, sizeof(req));
	req.consumer = opts->consumer;
	/* no more than the routes may take now: the rest would only be locked */
	req.max_messages = (int) Max(Min(routes.room, opts->max_messages), 1);
	req.as_of = now;
	req.lock_until = TimestampTzPlusMilliseconds(now, txoutbox_lock_timeout_ms);
	req.routes = routes.with_room;
	req.only_ids = opts->only_ids;
	req.scan_from = DT_NOBEGIN;
	if (opts->only_ids != (Datum) 0)
		outbox_release_leases(opts->only_ids, opts->consumer, now);	/* ours: claim them again */
	if (routes.n > 0 && opts->only_ids == (Datum) 0)
	{
		req.scan_from = low_water_mark(&routes.all, NULL);
		if (routes.room > 0)
			req.scan_from = low_water_room_mark(req.scan_from, &routes.with_room);
	}

	dispatch_claim(opts, &routes, &req, &round, round_cxt);
	network = MemoryContextAlloc(round_cxt, sizeof(PublishBatch) * Max(round.nbatches, 1));
	after_lease = MemoryContextAlloc(round_cxt, sizeof(PublishBatch) * Max(round.nbatches, 1));
	for (b = 0; b < round.nbatches; b++)
	{
		PublishBatch *batch = &round.batches[b];

		if (batch->publisher == NULL)
		{
			dispatch_fail_unroutable(batch);
			dispatch_mark(batch, opts, true, counts);
			counts->claimed += batch->n;
		}
		else if (batch->publisher->kind == PUBLISHER_IN_TRANSACTION)
		{
			dispatch_limit(batch, &routes);
			dispatch_publish_in_transaction(batch);
			dispatch_mark(batch, opts, true, counts);
			counts->claimed += batch->n;
		}
	}
	/* leases from now, after the others ran */
	for (b = 0; b < round.nbatches; b++)
	{
		PublishBatch *batch = &round.batches[b];

		if (batch->publisher == NULL || batch->publisher->kind == PUBLISHER_IN_TRANSACTION)
			continue;
		dispatch_limit(batch, &routes);
		dispatch_lease(batch, opts);
		counts->claimed += batch->n;
		if (batch->n == 0)
			continue;
		if (batch->publisher->kind == PUBLISHER_NETWORK)
			network[nnetwork++] = *batch;
		else
			after_lease[nafter++] = *batch;
	}
	/* (no route with room: each says when it may get some, next_unblock) */
	if (routes.room > 0)
		counts->next_due = outbox_next_due(&routes.with_room);
	if (routes.next_unblock != 0 && routes.next_unblock < counts->next_due)
		counts->next_due = routes.next_unblock;
	worker_xact_commit(round_cxt);

	/* 2: after-lease publishers, in a transaction of their own */
	if (nafter > 0)
	{
		remember_after_lease(after_lease, nafter);
		worker_xact_begin("txoutbox: publishing");
		for (b = 0; b < nafter; b++)
		{
			dispatch_publish_in_transaction(&after_lease[b]);
			dispatch_mark(&after_lease[b], opts, false, counts);
		}
		worker_xact_commit(round_cxt);
		nremembered = 0;
	}

	/* 3: network publishers, with no transaction open */
	if (nnetwork > 0)
	{
		pgstat_report_activity(STATE_RUNNING, "txoutbox: publishing");
		for (b = 0; b < nnetwork; b++)
			network[b].publisher->publish(network[b].items, network[b].n);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	mark_finished(opts, counts, network, nnetwork);
}

/*
 * Between rounds: mark what the network publishers finished since the last
 * collection.  Called with no transaction open.
 */
void
worker_collect(const DispatchOptions *opts, DispatchCounts *counts)
{
	dispatch_counts_init(counts);
	mark_finished(opts, counts, NULL, 0);
}
