/*-------------------------------------------------------------------------
 *
 * dispatch.h
 *	  Dispatch rounds: the helpers both kinds of round share (dispatch.c:
 *	  claim, copy and group by publisher, lease, publish, mark), dispatch()'s
 *	  round in a session's transaction (dispatch_session.c) and the worker's
 *	  round in transactions of its own (dispatch_worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_DISPATCH_H
#define TXOUTBOX_DISPATCH_H

#include "outbox.h"
#include "publisher.h"
#include "routes.h"
#include "settings.h"

typedef struct DispatchOptions
{
	const char *consumer;
	const char *topic;			/* NULL: every routed topic */
	int			max_messages;
	int64		retry_delay_ms; /* < 0: exponential backoff */
	TimestampTz lock_until;		/* 0: now + txoutbox.lock_timeout */
	Datum		only_ids;		/* uuid[]: claim only these, or 0 */
} DispatchOptions;

typedef struct DispatchCounts
{
	int			claimed;
	int			succeeded;
	int			retried;
	int			failed;
	TimestampTz next_due;		/* earliest future available_at of a routed
								 * message, or DT_NOEND */
	char		last_error[TXOUTBOX_ERROR_LEN];	/* latest publishing error, or "" */
	int			in_flight;		/* network publishing still under way */
} DispatchCounts;

/* A publisher's share of a round's messages, in claim order. */
typedef struct PublishBatch
{
	const Publisher *publisher; /* NULL: no usable route (broken) */
	PublishItem *items;
	int			n;
} PublishBatch;

/* A round's claimed messages, grouped by publisher. */
typedef struct ClaimedRound
{
	PublishBatch *batches;
	int			nbatches;
} ClaimedRound;

/* dispatch.c */
extern void dispatch_counts_init(DispatchCounts *counts);
extern void dispatch_claim(const DispatchOptions *opts, const RouteSet *routes,
						   ClaimRequest *req, ClaimedRound *round, MemoryContext cxt);
extern void dispatch_publish_in_transaction(PublishBatch *batch);
extern void dispatch_fail_unroutable(PublishBatch *batch);
extern void dispatch_limit(PublishBatch *batch, const RouteSet *routes);
extern void dispatch_lease(PublishBatch *batch, const DispatchOptions *opts);
extern void dispatch_mark(const PublishBatch *batch, const DispatchOptions *opts,
						  bool by_lock, DispatchCounts *counts);

/* dispatch_worker.c */
extern MemoryContext worker_xact_begin(const char *activity);
extern void worker_xact_commit(MemoryContext cxt);
extern void worker_round(const DispatchOptions *opts, DispatchCounts *counts);
extern void worker_collect(const DispatchOptions *opts, DispatchCounts *counts);
extern int	worker_interrupted_leases(pg_uuid_t **ids);

#endif							/* TXOUTBOX_DISPATCH_H */
