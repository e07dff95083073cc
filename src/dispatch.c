/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  What both kinds of dispatch round share (dispatch()'s round in a
 *	  session, dispatch_session.c; the worker's, dispatch_worker.c): claim
 *	  the claimable messages and group them by their route's publisher,
 *	  keep what each route may take now (its limits), lease the ones
 *	  published after the claim commits, publish the in-transaction ones,
 *	  and mark outcomes (counted in the routes' state as well).  Every function here runs in a
 *	  transaction, connected to SPI.
 *
 * Expiry: a message whose expiry (its expires_at, or created_at plus its
 * route's "ttl_ms", the earlier) has passed is not published.  The claim
 * fails those it finds (outbox.c); here, a claimed message whose expiry
 * passed before its publisher got it is failed "expired" unsent
 * (dispatch_publish_in_transaction; netpub checks the network publishers'
 * before it starts their requests), and a retry that would come at or
 * after the expiry is made due at the expiry, when the claim fails it, or
 * failed at once when that is past already.
 *
 * Ordered routes: an in-transaction publisher (notify) gets a run of each
 * key's messages per round, published in waves (the keys' heads, then each
 * key's next message once the one before it succeeded, and so on; a wave
 * per subtransaction), so what commits of a run is a prefix of it, in
 * order; the other publishers get a key's head only, and its next message
 * in a later round, after the head's mark committed.  See rank_key_runs.
 *
 * Memory: what a round keeps is allocated in the memory context current
 * when the round started (the worker resets it every round); SPI results
 * are copied out before the next statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "dispatch.h"
#include "message.h"
#include "route_state.h"
#include "settings.h"

/* Zeroed counts with nothing due. */
void
dispatch_counts_init(DispatchCounts *counts)
{
	memset(counts, 0, sizeof(*counts));
	counts->next_due = DT_NOEND;
}

/* A uuid[] Datum of n message ids. */
static Datum
id_array(Datum *ids, int n)
{
	return PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
}

/* A claimed item's id and place, to find it by id (bsearch). */
typedef struct ItemById
{
	pg_uuid_t	id;
	int			index;
} ItemById;

/* qsort/bsearch order of ItemById: uuid order, as SQL compares ids. */
static int
compare_item_ids(const void *a, const void *b)
{
	return memcmp(&((const ItemById *) a)->id, &((const ItemById *) b)->id, UUID_LEN);
}

/*
 * Give each of a claim's items its key_rank, and drop those it must not
 * publish.  The claim gives out an ordered key's message with its
 * predecessor (the older message of its key it waits for) if that one is
 * claimable too; here, walking the items in id order (a predecessor's id is
 * lower), a key's head gets rank 0 and a message whose predecessor is in
 * this claim with a rank gets one more, if an in-transaction publisher
 * takes it (see the file header).  The rest get -1 and wait: their
 * predecessor was not claimed with them (another transaction holds its row
 * lock, or this claim failed it for its expiry or its attempts; the claim
 * gives out no run whose head or predecessor is finished or due later, see
 * KEY_RUN_OK in outbox.c).  Items without a key order get 0.
 */
static void
rank_key_runs(PublishItem *items, int n)
{
	ItemById   *by_id = palloc(sizeof(ItemById) * n);
	int			i;

	for (i = 0; i < n; i++)
	{
		by_id[i].id = items[i].msg->id;
		by_id[i].index = i;
	}
	qsort(by_id, n, sizeof(ItemById), compare_item_ids);
	for (i = 0; i < n; i++)
	{
		PublishItem *it = &items[by_id[i].index];
		const OutboxRoute *r = it->route;
		ItemById	want;
		ItemById   *found;
		const PublishItem *before;

		it->key_rank = 0;
		if (!it->msg->has_key_after)
			continue;
		it->key_rank = -1;
		want.id = it->msg->key_after;
		found = bsearch(&want, by_id, i, sizeof(ItemById), compare_item_ids);
		if (found == NULL || r == NULL || r->broken ||
			r->publisher->kind != PUBLISHER_IN_TRANSACTION)
			continue;
		before = &items[found->index];
		if (before->key_rank >= 0 && before->route == r)
			it->key_rank = before->key_rank + 1;
	}
	pfree(by_id);
}

/*
 * Keep the items rank_key_runs left a rank, ordered by rank and, within a
 * rank, as claimed; returns how many.  A key's run is then in id order in
 * every subset taken in order (dispatch_limit keeps a prefix per route).
 */
static int
order_by_rank(PublishItem *items, int n)
{
	PublishItem *sorted = palloc(sizeof(PublishItem) * n);
	int		   *start = palloc0(sizeof(int) * (n + 1));
	int			kept = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (items[i].key_rank >= 0)
			start[items[i].key_rank + 1]++;
	for (i = 1; i <= n; i++)
		start[i] += start[i - 1];
	for (i = 0; i < n; i++)
		if (items[i].key_rank >= 0)
		{
			sorted[start[items[i].key_rank]++] = items[i];
			kept++;
		}
	memcpy(items, sorted, sizeof(PublishItem) * kept);
	pfree(sorted);
	pfree(start);
	return kept;
}

/*
 * Copy the n rows of the claim just run (SPI_tuptable) into items, with
 * their routes.
 */
static void
copy_claimed(const RouteSet *routes, const ClaimStamp *stamp, TupleDesc rowdesc,
			 PublishItem *items, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		OutboxMessage *m = message_copy_claimed(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
												rowdesc, stamp);
		OutboxRoute *r = routes_for_message(routes, m->topic, m->route_id);

		/* the route's ttl_ms may make the expiry earlier */
		if (r && r->policy.ttl_ms > 0)
		{
			TimestampTz ttl_end = TimestampTzPlusMilliseconds(m->created_at, r->policy.ttl_ms);

			if (m->expires_at == 0 || ttl_end < m->expires_at)
				m->expires_at = ttl_end;
		}
		items[i].msg = m;
		items[i].route = r;
		items[i].retry_after_ms = -1;
	}
}

/*
 * Lock the claimable messages req describes (outbox_lock_claimable), copy
 * them into cxt (which outlives SPI) with their routes, keep those of
 * ordered keys that may go now (rank_key_runs), and group them by publisher
 * (by key_rank, then in claim order within each group) into round.
 * Messages of a route that cannot be used (broken config, unknown
 * publisher) form the group whose publisher is NULL.
 *
 * Runs that could not be kept (their head is locked by another
 * transaction, say) took places of the claim's LIMIT.  When the LIMIT was
 * reached, a second claim looks past every row of the first for as many
 * more, one message of a key at a time (the walk of every message behind,
 * as claim() does), so that nothing waits behind such a key.
 */
void
dispatch_claim(const DispatchOptions *opts, const RouteSet *routes, ClaimRequest *req,
			   ClaimedRound *round, MemoryContext cxt)
{
	ClaimStamp	stamp = {req->consumer, req->as_of, req->lock_until};
	TupleDesc	rowdesc;
	PublishItem *items;
	MemoryContext old;
	int			n,
				kept,
				i,
				b;

	memset(round, 0, sizeof(*round));
	req->run_route_ids = routes->run_ids;
	/*
	 * No route may take a message now (all paused, held, out of tokens or
	 * full): the claim would find none, after walking every claimable
	 * message of theirs.
	 */
	n = routes->room > 0 ? outbox_lock_claimable(req, false) : 0;
	old = MemoryContextSwitchTo(cxt);
	round->batches = palloc0(sizeof(PublishBatch) * Max(routes->n + 1, 1));
	if (n == 0)
	{
		MemoryContextSwitchTo(old);
		return;
	}

	rowdesc = message_rowdesc();
	items = palloc0(sizeof(PublishItem) * 2 * n);
	copy_claimed(routes, &stamp, rowdesc, items, n);
	rank_key_runs(items, n);
	kept = n;
	for (i = 0; i < n; i++)
		if (items[i].key_rank < 0)
			kept--;
	if (kept < n && n >= req->max_messages)
	{
		ClaimRequest again = *req;
		Datum	   *ids = palloc(sizeof(Datum) * n);
		int			more;

		for (i = 0; i < n; i++)
			ids[i] = UUIDPGetDatum(&items[i].msg->id);
		again.max_messages = n - kept;
		again.except_ids = id_array(ids, n);
		MemoryContextSwitchTo(old);
		more = outbox_lock_claimable(&again, true);
		MemoryContextSwitchTo(cxt);
		copy_claimed(routes, &stamp, rowdesc, items + n, more);
		rank_key_runs(items + n, more);
		n += more;
	}
	n = order_by_rank(items, n);
	for (i = 0; i < n; i++)
	{
		OutboxRoute *r = items[i].route;
		const Publisher *p = (r && !r->broken) ? r->publisher : NULL;

		for (b = 0; b < round->nbatches; b++)
			if (round->batches[b].publisher == p)
				break;
		if (b == round->nbatches)
		{
			round->batches[b].publisher = p;
			round->batches[b].items = palloc(sizeof(PublishItem) * n);
			round->nbatches++;
		}
		round->batches[b].items[round->batches[b].n++] = items[i];
	}
	MemoryContextSwitchTo(old);
}

/* Subtransaction body: one publisher's batch (or one wave of it). */
static void
publish_batch_body(void *arg)
{
	PublishBatch *b = (PublishBatch *) arg;

	/* for the tests: a wave of runs that fails (072_ordered_runs.pl) */
	if (b->n > 0 && b->items[0].key_rank == 1)
		settings_inject_fault("ordered_second_wave");

	b->publisher->publish(b->items, b->n);
}

/*
 * Whether the item before it in its key's run (in the wave before, items
 * [from, to) of batch) succeeded; ok: by batch index.
 */
static bool
key_predecessor_succeeded(const PublishBatch *batch, int from, int to, const bool *ok,
						  const PublishItem *it)
{
	int			i;

	for (i = from; i < to; i++)
		if (memcmp(&batch->items[i].msg->id, &it->msg->key_after, UUID_LEN) == 0)
			return ok[i];
	return false;
}

/*
 * Publish a batch inside the current transaction, in waves by key_rank
 * (one wave when no route is ordered): an item of a key's run goes out only
 * after the one before it succeeded in the wave before; the others are
 * dropped from the batch untouched, and claimable again when this
 * transaction ends.  Items whose expiry has passed are not published: they
 * are failed "expired".  An ERROR from the publisher is caught (that wave's
 * subtransaction rolled back) and every item the wave had becomes a retry
 * with that reason; a query cancel goes on.
 */
void
dispatch_publish_in_transaction(PublishBatch *batch)
{
	int			cap = Max(batch->n, 1);
	PublishBatch wave = {batch->publisher, palloc(sizeof(PublishItem) * cap), 0};
	int		   *from = palloc(sizeof(int) * cap);
	bool	   *ok = palloc0(sizeof(bool) * cap);
	bool	   *keep = palloc0(sizeof(bool) * cap);
	TimestampTz now = GetCurrentTimestamp();
	int			wave_start = 0,
				last_wave = 0,
				kept = 0,
				i;

	while (wave_start < batch->n)
	{
		int			rank = batch->items[wave_start].key_rank;
		int			wave_end = wave_start;
		char	   *error = NULL;

		while (wave_end < batch->n && batch->items[wave_end].key_rank == rank)
			wave_end++;
		wave.n = 0;
		for (i = wave_start; i < wave_end; i++)
		{
			PublishItem *it = &batch->items[i];

			if (rank > 0 && !key_predecessor_succeeded(batch, last_wave, wave_start, ok, it))
				continue;
			keep[i] = true;
			if (it->msg->expires_at != 0 && now >= it->msg->expires_at)
			{
				publisher_set_expired(it);
				continue;
			}
			publisher_set_outcome(it, PUBLISH_RETRY, "%s publisher set no outcome",
								  batch->publisher->name);
			from[wave.n] = i;
			wave.items[wave.n++] = *it;
		}
		if (wave.n > 0 && !try_in_subtransaction(publish_batch_body, &wave, &error, NULL))
			for (i = 0; i < wave.n; i++)
				publisher_set_outcome(&wave.items[i], PUBLISH_RETRY, "%s publisher failed: %s",
									  batch->publisher->name, error);
		for (i = 0; i < wave.n; i++)
		{
			batch->items[from[i]] = wave.items[i];
			ok[from[i]] = wave.items[i].outcome == PUBLISH_SUCCEEDED;
		}
		last_wave = wave_start;
		wave_start = wave_end;
	}
	for (i = 0; i < batch->n; i++)
		if (keep[i])
			batch->items[kept++] = batch->items[i];
	batch->n = kept;
	pfree(wave.items);
	pfree(from);
	pfree(ok);
	pfree(keep);
}

/* Messages with no usable route: retried later, with the reason. */
void
dispatch_fail_unroutable(PublishBatch *batch)
{
	int			i;

	for (i = 0; i < batch->n; i++)
	{
		OutboxRoute *r = batch->items[i].route;

		publisher_set_outcome(&batch->items[i], PUBLISH_RETRY, "%s",
							  r && r->broken ? r->broken : "no route for topic");
	}
}

/*
 * Keep of a batch only what each route may take this round: its room (see
 * routes_load: nothing while paused, its breaker open, out of tokens, or
 * with all it may have in flight), taking the route's tokens or its probe
 * (route_state_take).  The rest are dropped from the batch untouched: they
 * are claimable again when this transaction ends.
 */
void
dispatch_limit(PublishBatch *batch, const RouteSet *routes)
{
	int		   *allowed = palloc0(sizeof(int) * Max(routes->n, 1));
	int			kept = 0;
	int			i;

	for (i = 0; i < batch->n; i++)
		allowed[batch->items[i].route - routes->routes]++;
	for (i = 0; i < routes->n; i++)
		if (allowed[i] > 0)
			allowed[i] = route_state_take(&routes->routes[i], Min(allowed[i], routes->routes[i].room));
	for (i = 0; i < batch->n; i++)
	{
		int			r = batch->items[i].route - routes->routes;

		if (allowed[r] == 0)
			continue;
		allowed[r]--;
		batch->items[kept++] = batch->items[i];
	}
	batch->n = kept;
}

/*
 * Lease a batch's messages from now (status processing, attempt counted),
 * setting their lease_until.
 */
void
dispatch_lease(PublishBatch *batch, const DispatchOptions *opts)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(batch->n, 1));
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz lease_until = opts->lock_until != 0 ? opts->lock_until :
		TimestampTzPlusMilliseconds(now, txoutbox_lock_timeout_ms);
	int			i;

	for (i = 0; i < batch->n; i++)
	{
		batch->items[i].msg->lease_until = lease_until;
		ids[i] = UUIDPGetDatum(&batch->items[i].msg->id);
	}
	if (batch->n > 0)
		outbox_lease_many(id_array(ids, batch->n), opts->consumer, now, lease_until);
}

/* The delay before the next attempt of a retried item. */
static int64
retry_delay(const PublishItem *it, const DispatchOptions *opts)
{
	const RoutePolicy *policy = it->route ? &it->route->policy : NULL;

	if (it->retry_after_ms >= 0)
		return Min(it->retry_after_ms,
				   (policy && policy->retry_max_delay_ms >= 0) ?
				   policy->retry_max_delay_ms : (int64) txoutbox_retry_max_delay_ms);
	if (opts->retry_delay_ms >= 0)
		return opts->retry_delay_ms;
	return retry_backoff_ms(it->msg->attempt_count,
							policy ? policy->retry_base_delay_ms : -1,
							policy ? policy->retry_max_delay_ms : -1);
}

/*
 * Record a batch's outcomes; add them to counts.  by_lock: the messages are
 * still only locked by this transaction (outbox_lock_claimable), rather than
 * leased.  Items still in flight are left for a later collection.
 */
void
dispatch_mark(const PublishBatch *b, const DispatchOptions *opts, bool by_lock,
			  DispatchCounts *counts)
{
	int			cap = Max(b->n, 1);
	Datum	   *ok_ids = palloc(sizeof(Datum) * cap);
	Datum	   *bad_ids = palloc(sizeof(Datum) * cap);
	Datum	   *reasons = palloc(sizeof(Datum) * cap);
	Datum	   *next_at = palloc(sizeof(Datum) * cap);
	bool	   *next_null = palloc(sizeof(bool) * cap);
	Datum	   *max_att = palloc(sizeof(Datum) * cap);
	bool	   *max_null = palloc(sizeof(bool) * cap);
	Datum	   *not_sent = palloc(sizeof(Datum) * cap);
	Datum	   *expired = palloc(sizeof(Datum) * cap);
	bool	   *reason_null = palloc(sizeof(bool) * cap);
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
		const PublishItem *it = &b->items[i];
		const RoutePolicy *policy = it->route ? &it->route->policy : NULL;
		TimestampTz expires_at = it->msg->expires_at;
		bool		is_expired = it->expired;

		if (it->outcome == PUBLISH_IN_FLIGHT)
			continue;			/* marked when collected */
		if (!is_expired)
			route_state_record(it); /* an expiry says nothing of the route */
		if (it->outcome == PUBLISH_SUCCEEDED)
		{
			ok_ids[nok++] = UUIDPGetDatum(&it->msg->id);
			continue;
		}
		bad_ids[nbad] = UUIDPGetDatum(&it->msg->id);
		max_null[nbad] = (policy == NULL || policy->max_attempts <= 0);
		max_att[nbad] = Int32GetDatum(max_null[nbad] ? 0 : policy->max_attempts);
		/* one not sent counts no attempt (a lease's is given back) */
		not_sent[nbad] = BoolGetDatum((it->not_sent && it->outcome == PUBLISH_RETRY) ||
									  it->expired);
		next_null[nbad] = (it->outcome == PUBLISH_FAILED);
		/* only dispatch()'s retry_delay can go that far (checked then) */
		next_at[nbad] = next_null[nbad] ? (Datum) 0 :
			TimestampTzGetDatum(outbox_time_plus_us(now, retry_delay(it, opts) * 1000,
													"now + retry_delay"));
		/* a retry at or after the expiry: due at the expiry, or failed now */
		if (!next_null[nbad] && expires_at != 0 &&
			DatumGetTimestampTz(next_at[nbad]) >= expires_at)
		{
			if (expires_at <= now)
			{
				is_expired = true;
				next_null[nbad] = true;
				next_at[nbad] = (Datum) 0;
			}
			else
				next_at[nbad] = TimestampTzGetDatum(expires_at);
		}
		expired[nbad] = BoolGetDatum(is_expired);
		reason_null[nbad] = is_expired && it->error == NULL;
		reasons[nbad] = reason_null[nbad] ? (Datum) 0 :
			CStringGetTextDatum(it->error ? it->error : "unknown error");
		if (it->error)
			strlcpy(counts->last_error, it->error, TXOUTBOX_ERROR_LEN);
		nbad++;
	}

	if (nok > 0)
		counts->succeeded += outbox_mark_succeeded_many(id_array(ok_ids, nok), opts->consumer,
														now, by_lock);
	if (nbad > 0)
	{
		int			dims[1] = {nbad};
		int			lbs[1] = {1};
		int			retried;

		retried = outbox_mark_failed_many(
										  id_array(bad_ids, nbad),
										  PointerGetDatum(construct_md_array(reasons, reason_null, 1, dims, lbs,
																			 TEXTOID, -1, false, TYPALIGN_INT)),
										  PointerGetDatum(construct_md_array(next_at, next_null, 1, dims, lbs,
																			 TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
										  PointerGetDatum(construct_md_array(max_att, max_null, 1, dims, lbs,
																			 INT4OID, 4, true, TYPALIGN_INT)),
										  PointerGetDatum(construct_array(not_sent, nbad, BOOLOID, 1, true, TYPALIGN_CHAR)),
										  PointerGetDatum(construct_array(expired, nbad, BOOLOID, 1, true, TYPALIGN_CHAR)),
										  opts->consumer, now, by_lock);
		counts->retried += retried;
		counts->failed += (int) SPI_processed - retried;
	}
}
