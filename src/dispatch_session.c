/*-------------------------------------------------------------------------
 *
 * dispatch_session.c
 *	  dispatch(): one dispatch round in the caller's session and
 *	  transaction, through the configured routes.
 *
 * Everything happens in the caller's transaction: the claimable messages
 * are locked (FOR UPDATE SKIP LOCKED), every publisher runs to completion
 * (network publishers wait for their answers; the caller's locks hold the
 * messages meanwhile), and each message's outcome is one UPDATE that
 * commits or rolls back with the caller.  dispatch() keeps no low-water
 * mark: its claims scan from the start of the claim order.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "dispatch.h"
#include "settings.h"
#include "txoutbox.h"

PG_FUNCTION_INFO_V1(txoutbox_dispatch);

/* The round itself (see the file header). */
static void
session_round(const DispatchOptions *opts, DispatchCounts *counts)
{
	RouteSet	routes;
	ClaimRequest req;
	ClaimedRound round;
	TimestampTz now;
	int			b;

	dispatch_counts_init(counts);
	SPI_connect();
	routes_load(&routes, CurrentMemoryContext);
	if (opts->topic != NULL && !routes_any_match(&routes, opts->topic))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("publisher not configured for topic \"%s\"", opts->topic),
				 errhint("Add a route with txoutbox.add_route().")));

	now = GetCurrentTimestamp();
	memset(&req, 0, sizeof(req));
	req.consumer = opts->consumer;
	req.max_messages = opts->max_messages;
	req.topic = opts->topic;
	req.as_of = now;
	req.lock_until = opts->lock_until != 0 ? opts->lock_until :
		TimestampTzPlusMilliseconds(now, txoutbox_lock_timeout_ms);
	req.routes = routes.with_room;
	req.tenant = settings_bound_tenant();
	req.scan_from = DT_NOBEGIN;

	dispatch_claim(opts, &routes, &req, &round, CurrentMemoryContext);
	for (b = 0; b < round.nbatches; b++)
	{
		PublishBatch *batch = &round.batches[b];

		if (batch->publisher == NULL)
			dispatch_fail_unroutable(batch);
		else
		{
			dispatch_limit(batch, &routes);
			dispatch_publish_in_transaction(batch);
		}
		counts->claimed += batch->n;
		dispatch_mark(batch, opts, true, counts);
	}
	SPI_finish();
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
	session_round(&opts, &counts);

	InitMaterializedSRF(fcinfo, 0);
	values[0] = Int32GetDatum(counts.claimed);
	values[1] = Int32GetDatum(counts.succeeded);
	values[2] = Int32GetDatum(counts.retried);
	values[3] = Int32GetDatum(counts.failed);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
