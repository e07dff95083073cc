/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  One dispatch round: load routes, claim, publish through each message's
 *	  route, mark the outcomes.  The background worker and the SQL function
 *	  dispatch() both run this code.
 *
 * In the worker (own_transactions) a round is at most two short
 * transactions: the first claims, publishes through the transactional
 * publishers (notify, function) and marks their outcomes, so those commit
 * together; external publishers (http) then run with no transaction open,
 * and their outcomes are marked in a second transaction.  In dispatch()
 * everything happens in the caller's transaction.
 *
 * Memory: everything a round keeps across its transactions is allocated in
 * the context that was current on entry; the worker resets it every round.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "storage/lmgr.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/typcache.h"
#include "utils/timestamp.h"

#include "publisher.h"
#include "txoutbox.h"

PG_FUNCTION_INFO_V1(txoutbox_dispatch);

/* The publishers that work outside the transaction and keep work in flight. */
static const Publisher *const external_publishers[] = {&http_publisher};

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
 * Copy the locked row i of SPI_tuptable into an OutboxMessage in cxt, as
 * the claim makes it: attempt counted, processing under consumer's lease
 * (the row handed to a function publisher shows that state).
 */
static OutboxMessage *
copy_message(uint64 i, TupleDesc rowdesc, const ClaimRequest *req, MemoryContext cxt)
{
	HeapTuple	tup = SPI_tuptable->vals[i];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	MemoryContext old = MemoryContextSwitchTo(cxt);
	OutboxMessage *m = palloc0(sizeof(OutboxMessage));
	Datum		values[18];
	bool		nulls[18];
	HeapTuple	row;

	Assert(desc->natts == 18 && rowdesc->natts == 18);
	heap_deform_tuple(tup, desc, values, nulls);
	memcpy(&m->id, DatumGetUUIDP(values[0]), sizeof(pg_uuid_t));
	uuid_to_cstring(&m->id, m->id_str);
	m->tenant_id = nulls[1] ? NULL : TextDatumGetCString(values[1]);
	m->org_id = nulls[2] ? NULL : TextDatumGetCString(values[2]);
	m->topic = TextDatumGetCString(values[3]);
	m->message_key = nulls[4] ? NULL : TextDatumGetCString(values[4]);
	m->payload = DatumGetJsonbPCopy(values[5]);
	m->headers = DatumGetJsonbPCopy(values[6]);
	m->correlation_id = nulls[7] ? NULL : TextDatumGetCString(values[7]);
	m->attempt_count = DatumGetInt32(values[9]) + 1;
	m->max_attempts = DatumGetInt32(values[10]);
	m->created_at = DatumGetTimestampTz(values[16]);
	m->lease_until = req->lock_until;

	values[8] = CStringGetTextDatum("processing");
	values[9] = Int32GetDatum(m->attempt_count);
	values[12] = TimestampTzGetDatum(req->lock_until);
	values[13] = TimestampTzGetDatum(req->as_of);
	nulls[13] = false;
	values[14] = CStringGetTextDatum(req->consumer);
	nulls[14] = false;
	values[17] = TimestampTzGetDatum(req->as_of);
	row = heap_form_tuple(rowdesc, values, nulls);
	m->row = heap_copy_tuple_as_datum(row, rowdesc);
	MemoryContextSwitchTo(old);
	return m;
}

/* The row type of txoutbox.messages, blessed for building composites. */
static TupleDesc
messages_rowdesc(MemoryContext cxt)
{
	Oid			nsp = get_namespace_oid("txoutbox", false);
	Oid			relid = get_relname_relid("messages", nsp);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TupleDesc	desc;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table txoutbox.messages does not exist")));
	desc = lookup_rowtype_tupdesc_copy(get_rel_type_id(relid), -1);
	MemoryContextSwitchTo(old);
	return desc;
}

/* Subtransaction body: one publisher's batch. */
static void
publish_batch_body(void *arg)
{
	PublishBatch *b = (PublishBatch *) arg;

	b->publisher->publish(b->items, b->n);
}

/*
 * Publish a batch.  In a transaction, an ERROR from the publisher is caught
 * (its subtransaction rolled back) and every item becomes a retry; outside
 * one (external publishers in the worker) the publisher must not throw for
 * a message's failure, and any ERROR ends the round, leaving the claims to
 * their lease.
 */
static void
publish_batch(PublishBatch *b, bool in_transaction)
{
	int			i;
	char	   *error = NULL;

	for (i = 0; i < b->n; i++)
		publisher_set_outcome(&b->items[i], PUBLISH_RETRY, "%s publisher set no outcome",
							  b->publisher->name);
	if (!in_transaction)
	{
		b->publisher->publish(b->items, b->n);
		return;
	}
	if (!try_in_subtransaction(publish_batch_body, b, &error, NULL))
		for (i = 0; i < b->n; i++)
			publisher_set_outcome(&b->items[i], PUBLISH_RETRY, "%s publisher failed: %s",
								  b->publisher->name, error);
}

/*
 * Keep the items of an external batch its publisher has room for (per
 * route, see Publisher.capacity) and lease them from now, setting their
 * lease_until; drop the rest from the batch (untouched, they are claimable
 * again when the claiming transaction ends).  Caller is in SPI, in the
 * claiming transaction.
 */
static void
lease_within_capacity(PublishBatch *batch, const DispatchOptions *opts, const RouteSet *routes)
{
	int		   *room = palloc(sizeof(int) * Max(routes->n, 1));
	Datum	   *ids = palloc(sizeof(Datum) * Max(batch->n, 1));
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz lease_until = opts->lock_until != 0 ? opts->lock_until :
		TimestampTzPlusMilliseconds(now, txoutbox_lock_timeout_ms);
	int			kept = 0;
	int			i;

	for (i = 0; i < routes->n; i++)
		room[i] = -1;			/* not asked yet */
	for (i = 0; i < batch->n; i++)
	{
		PublishItem *it = &batch->items[i];
		int			r = it->route - routes->routes;

		if (room[r] < 0)
			room[r] = batch->publisher->capacity ?
				batch->publisher->capacity(it->route->id) : INT_MAX;
		if (room[r] == 0)
			continue;
		room[r]--;
		it->msg->lease_until = lease_until;
		batch->items[kept] = *it;
		ids[kept++] = UUIDPGetDatum(&it->msg->id);
	}
	batch->n = kept;
	if (kept > 0)
		outbox_lease_many(PointerGetDatum(construct_array(ids, kept, UUIDOID, UUID_LEN,
														  false, TYPALIGN_CHAR)),
						  opts->consumer, now, lease_until);
}

/*
 * Record a batch's outcomes; add them to counts.  by_lock: the messages are
 * still only locked by this transaction (see outbox_lock_claimable), rather
 * than leased.  Caller is in SPI.
 */
static void
mark_batch(const PublishBatch *b, const DispatchOptions *opts, bool by_lock,
		   DispatchCounts *counts)
{
	Datum	   *ok_ids = palloc(sizeof(Datum) * Max(b->n, 1));
	Datum	   *bad_ids = palloc(sizeof(Datum) * Max(b->n, 1));
	Datum	   *reasons = palloc(sizeof(Datum) * Max(b->n, 1));
	Datum	   *next_at = palloc(sizeof(Datum) * Max(b->n, 1));
	bool	   *next_null = palloc(sizeof(bool) * Max(b->n, 1));
	Datum	   *max_att = palloc(sizeof(Datum) * Max(b->n, 1));
	bool	   *max_null = palloc(sizeof(bool) * Max(b->n, 1));
	Datum	   *not_sent = palloc(sizeof(Datum) * Max(b->n, 1));
	int			nok = 0,
				nbad = 0,
				i;
	TimestampTz now;

	/* retries are due after the clock read once we have an xid (low_water.c) */
	for (i = 0; i < b->n; i++)
		if (b->items[i].outcome == PUBLISH_RETRY)
		{
			(void) GetCurrentTransactionId();
			break;
		}
	now = GetCurrentTimestamp();

	for (i = 0; i < b->n; i++)
	{
		PublishItem *it = &b->items[i];
		const RoutePolicy *policy = it->route ? &it->route->policy : NULL;

		if (it->outcome == PUBLISH_IN_FLIGHT)
			continue;			/* marked when collected */
		if (it->outcome == PUBLISH_SUCCEEDED)
		{
			ok_ids[nok++] = UUIDPGetDatum(&it->msg->id);
			continue;
		}
		bad_ids[nbad] = UUIDPGetDatum(&it->msg->id);
		max_null[nbad] = (policy == NULL || policy->max_attempts <= 0);
		max_att[nbad] = Int32GetDatum(max_null[nbad] ? 0 : policy->max_attempts);
		reasons[nbad] = CStringGetTextDatum(it->error ? it->error : "unknown error");
		not_sent[nbad] = BoolGetDatum(it->not_sent && it->outcome == PUBLISH_RETRY);
		next_null[nbad] = (it->outcome == PUBLISH_FAILED);
		if (!next_null[nbad])
		{
			int64		delay;

			if (it->retry_after_ms >= 0)
				delay = Min(it->retry_after_ms,
							(policy && policy->retry_max_delay_ms >= 0) ?
							policy->retry_max_delay_ms : (int64) txoutbox_retry_max_delay_ms);
			else if (opts->retry_delay_ms >= 0)
				delay = opts->retry_delay_ms;
			else
				delay = retry_backoff_ms(it->msg->attempt_count,
										 policy ? policy->retry_base_delay_ms : -1,
										 policy ? policy->retry_max_delay_ms : -1);
			/* only dispatch()'s retry_delay can go that far (checked then) */
			next_at[nbad] = TimestampTzGetDatum(outbox_time_plus_us(now, delay * 1000,
																	"now + retry_delay"));
		}
		else
			next_at[nbad] = (Datum) 0;
		if (it->error)
			strlcpy(counts->last_error, it->error, TXOUTBOX_ERROR_LEN);
		nbad++;
	}

	if (nok > 0)
		counts->succeeded += outbox_mark_succeeded_many(
														PointerGetDatum(construct_array(ok_ids, nok, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR)),
														opts->consumer, now, by_lock);
	if (nbad > 0)
	{
		int			dims[1] = {nbad};
		int			lbs[1] = {1};
		int			retried;

		retried = outbox_mark_failed_many(
										  PointerGetDatum(construct_array(bad_ids, nbad, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR)),
										  PointerGetDatum(construct_array(reasons, nbad, TEXTOID, -1, false, TYPALIGN_INT)),
										  PointerGetDatum(construct_md_array(next_at, next_null, 1, dims, lbs,
																			 TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
										  PointerGetDatum(construct_md_array(max_att, max_null, 1, dims, lbs,
																			 INT4OID, 4, true, TYPALIGN_INT)),
										  PointerGetDatum(construct_array(not_sent, nbad, BOOLOID, 1, true, TYPALIGN_CHAR)),
										  opts->consumer, now, by_lock);
		counts->retried += retried;
		counts->failed += (int) SPI_processed - retried;
	}
}

/*
 * Run one round (see the file header).  The worker calls this outside any
 * transaction with own_transactions; dispatch() inside its caller's.
 */
void
dispatch_round(const DispatchOptions *opts, DispatchCounts *counts)
{
	MemoryContext round_cxt = CurrentMemoryContext;
	RouteSet	routes;
	ClaimRequest req;
	TupleDesc	rowdesc;
	PublishBatch *batches;
	int			nbatches = 0;
	PublishItem *items;
	int			n,
				i,
				b;
	bool		any_external = false;
	TimestampTz now;

	memset(counts, 0, sizeof(*counts));
	counts->next_due = DT_NOEND;

	if (opts->own_transactions)
		worker_xact_begin("txoutbox: claim and publish");
	else
		SPI_connect();

	routes_load(&routes, round_cxt);
	if (opts->topic != NULL && routes_match(&routes, opts->topic) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("publisher not configured for topic \"%s\"", opts->topic),
				 errhint("Add a route with txoutbox.add_route().")));

	now = GetCurrentTransactionStartTimestamp();
	if (!opts->own_transactions)
		now = GetCurrentTimestamp();
	memset(&req, 0, sizeof(req));
	req.consumer = opts->consumer;
	req.max_messages = opts->max_messages;
	req.topic = opts->topic;
	req.as_of = now;
	req.lock_until = opts->lock_until != 0 ? opts->lock_until :
		TimestampTzPlusMilliseconds(now, txoutbox_lock_timeout_ms);
	req.route_exact = routes.exact;
	req.route_prefixes = routes.prefixes;
	req.tenant = txoutbox_bound_tenant();

	/*
	 * When every route publishes outside the transaction, lock no more than
	 * they have room for: what they cannot take would only be locked and
	 * let go again.
	 */
	if (opts->own_transactions)
	{
		int64		room = 0;
		bool		all_external = routes.n > 0;

		for (i = 0; i < routes.n && all_external; i++)
		{
			const Publisher *p = routes.routes[i].publisher;

			if (p == NULL || p->transactional || p->capacity == NULL)
				all_external = false;
			else
				room += p->capacity(routes.routes[i].id);
		}
		if (all_external)
			req.max_messages = (int) Max(Min(room, req.max_messages), 1);
	}

	/* the worker's claims start at its low-water mark (low_water.c) */
	req.scan_from = DT_NOBEGIN;
	if (opts->own_transactions && routes.n > 0)
		req.scan_from = low_water_mark(routes.all_exact, routes.all_prefixes);

	n = routes.n > 0 ? outbox_lock_claimable(&req) : 0;
	counts->claimed = n;

	/* group the claimed messages by publisher, in claim order */
	rowdesc = n > 0 ? messages_rowdesc(round_cxt) : NULL;
	items = MemoryContextAllocZero(round_cxt, sizeof(PublishItem) * Max(n, 1));
	batches = MemoryContextAllocZero(round_cxt, sizeof(PublishBatch) * Max(routes.n + 1, 1));
	for (i = 0; i < n; i++)
	{
		items[i].msg = copy_message(i, rowdesc, &req, round_cxt);
		items[i].route = routes_match(&routes, items[i].msg->topic);
		items[i].retry_after_ms = -1;
		items[i].not_sent = false;
	}
	for (i = 0; i < n; i++)
	{
		OutboxRoute *r = items[i].route;
		const Publisher *p = (r && !r->broken) ? r->publisher : NULL;

		for (b = 0; b < nbatches; b++)
			if (batches[b].publisher == p)
				break;
		if (b == nbatches)
		{
			batches[b].publisher = p;
			batches[b].items = MemoryContextAlloc(round_cxt, sizeof(PublishItem) * n);
			nbatches++;
		}
		batches[b].items[batches[b].n++] = items[i];
	}

	/* in-transaction publishers (and broken routes) first */
	for (b = 0; b < nbatches; b++)
	{
		PublishBatch *batch = &batches[b];

		if (batch->publisher == NULL)
		{
			/* no usable route (a broken config): retry later with the reason */
			for (i = 0; i < batch->n; i++)
			{
				OutboxRoute *r = batch->items[i].route;

				publisher_set_outcome(&batch->items[i], PUBLISH_RETRY, "%s",
									  r ? r->broken : "no route for topic");
			}
			mark_batch(batch, opts, true, counts);
		}
		else if (batch->publisher->transactional || !opts->own_transactions)
		{
			/* publish and record the outcome in this transaction */
			publish_batch(batch, true);
			mark_batch(batch, opts, true, counts);
		}
	}

	/*
	 * External publishers: take a lease, from now (after the others ran),
	 * on as many as each route has room for; the rest stay untouched and
	 * are claimable again when this transaction ends.
	 */
	for (b = 0; b < nbatches && opts->own_transactions; b++)
	{
		PublishBatch *batch = &batches[b];

		if (batch->publisher && !batch->publisher->transactional)
		{
			counts->claimed -= batch->n;
			lease_within_capacity(batch, opts, &routes);
			counts->claimed += batch->n;
			any_external |= batch->n > 0;
		}
	}

	counts->next_due = outbox_next_due(routes.exact, routes.prefixes);

	if (opts->own_transactions)
		worker_xact_commit(round_cxt);
	else
	{
		SPI_finish();
		return;
	}

	/* external publishers: no transaction open while they work */
	if (any_external)
	{
		pgstat_report_activity(STATE_RUNNING, "txoutbox: publishing");
		for (b = 0; b < nbatches; b++)
			if (batches[b].publisher && !batches[b].publisher->transactional)
				publish_batch(&batches[b], false);
	}
	dispatch_collect(opts, counts, any_external ? batches : NULL, nbatches, 0);
}

/*
 * Worker: record the outcomes external publishers finished (those of this
 * round's batches that finished at once, and those collected from earlier
 * rounds) in one short transaction, and count what is still in flight.
 * batches may be NULL.  While nothing finished, wait up to wait_ms for
 * something to (see Publisher.collect).  Called outside a transaction.
 */
void
dispatch_collect(const DispatchOptions *opts, DispatchCounts *counts,
				 PublishBatch *batches, int nbatches, long wait_ms)
{
	MemoryContext cxt = CurrentMemoryContext;
	PublishBatch done[lengthof(external_publishers)];
	int			ndone = 0;
	bool		any = false;
	int			b,
				i;

	for (b = 0; batches != NULL && b < nbatches; b++)
		if (batches[b].publisher && !batches[b].publisher->transactional)
			for (i = 0; i < batches[b].n && !any; i++)
				any = batches[b].items[i].outcome != PUBLISH_IN_FLIGHT;
	counts->in_flight = 0;
	for (b = 0; b < lengthof(external_publishers); b++)
	{
		const Publisher *p = external_publishers[b];

		if (p->collect == NULL)
			continue;
		done[ndone].publisher = p;
		done[ndone].n = p->collect(&done[ndone].items, any ? 0 : wait_ms);
		any |= done[ndone].n > 0;
		ndone++;
		counts->in_flight += p->in_flight();
	}
	if (!any)
		return;

	worker_xact_begin("txoutbox: recording outcomes");
	for (b = 0; batches != NULL && b < nbatches; b++)
		if (batches[b].publisher && !batches[b].publisher->transactional)
			mark_batch(&batches[b], opts, false, counts);
	for (b = 0; b < ndone; b++)
		if (done[b].n > 0)
			mark_batch(&done[b], opts, false, counts);
	worker_xact_commit(cxt);
}

/*
 * SQL: dispatch(consumer, topic, max_messages, retry_delay, claim_lock_to)
 * One round in the caller's session and transaction.
 */
Datum
txoutbox_dispatch(PG_FUNCTION_ARGS)
{
	DispatchOptions opts;
	DispatchCounts counts;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	txoutbox_require_preload();
	memset(&opts, 0, sizeof(opts));
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("consumer must not be null")));
	opts.consumer = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (opts.consumer[0] == '\0')
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("consumer must not be empty")));
	opts.topic = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("max_messages must not be null")));
	opts.max_messages = PG_GETARG_INT32(2);
	if (opts.max_messages < 1 || opts.max_messages > TXOUTBOX_MAX_CLAIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_messages must be between 1 and %d, not %d",
						TXOUTBOX_MAX_CLAIM, opts.max_messages)));
	opts.retry_delay_ms = -1;
	if (!PG_ARGISNULL(3))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(3);
		int64		us;

		if (iv->month != 0 || iv->day < 0 || iv->time < 0 || iv->day > 36500)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("retry_delay must be a non-negative interval in days, hours, minutes or seconds")));
		if (pg_mul_s64_overflow(iv->day, USECS_PER_DAY, &us) ||
			pg_add_s64_overflow(us, iv->time, &us))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("retry_delay is out of range")));
		opts.retry_delay_ms = us / 1000;
		/* a retry due now + retry_delay must be a time we can store */
		(void) outbox_time_plus_us(GetCurrentTimestamp(), opts.retry_delay_ms * 1000,
								   "now + retry_delay");
	}
	if (!PG_ARGISNULL(4))
	{
		opts.lock_until = PG_GETARG_TIMESTAMPTZ(4);
		if (TIMESTAMP_NOT_FINITE(opts.lock_until) || opts.lock_until <= GetCurrentTimestamp())
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("claim_lock_to must be a finite time in the future")));
	}
	opts.own_transactions = false;

	dispatch_round(&opts, &counts);

	InitMaterializedSRF(fcinfo, 0);
	values[0] = Int32GetDatum(counts.claimed);
	values[1] = Int32GetDatum(counts.succeeded);
	values[2] = Int32GetDatum(counts.retried);
	values[3] = Int32GetDatum(counts.failed);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
