/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  The message state machine's statements (outbox.c), as the SQL
 *	  functions and the dispatcher run them.  Every function here runs
 *	  cached SPI plans: the caller is connected to SPI.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_OUTBOX_H
#define TXOUTBOX_OUTBOX_H

#include "datatype/timestamp.h"

/*
 * The messages a dispatcher's claim may take, by their routes (all 0: any).
 * overlap_patterns/overlap_room: when a route without room takes topics
 * that a prefix route with room also matches (orders.big beside orders.*),
 * the topic patterns of every route (NULL for fan-out routes) and whether
 * each has room, so that a message is taken only where its own route (the
 * most specific, _route_index) has room; else 0 (the other arrays say it).
 */
typedef struct RouteFilter
{
	Datum		exact;			/* text[] of exact topics, or 0 for no filter */
	Datum		prefixes;		/* text[] of topic prefixes, or 0 */
	Datum		fanout_ids;		/* int8[] of the fan-out routes whose copies
								 * may be taken, or 0 */
	Datum		overlap_patterns;	/* text[], or 0 */
	Datum		overlap_room;	/* bool[], or 0 */
} RouteFilter;

/* What to claim (see outbox_claim and outbox_lock_claimable). */
typedef struct ClaimRequest
{
	const char *consumer;
	int			max_messages;
	const char *topic;			/* NULL: any topic */
	TimestampTz lock_until;
	TimestampTz as_of;
	RouteFilter routes;			/* by route (all 0: any message) */
	const char *tenant;			/* only this tenant's messages, or NULL */
	TimestampTz scan_from;		/* no claimable message is available before
								 * this (the dispatcher's low-water mark), or
								 * DT_NOBEGIN */
	Datum		only_ids;		/* uuid[]: only these messages, or 0 */
	Datum		run_route_ids;	/* int8[] of the ordered routes that take a
								 * run of a key per claim
								 * (outbox_lock_claimable), or 0 */
	Datum		except_ids;		/* uuid[]: not these messages, or 0 */
} ClaimRequest;

extern int	outbox_claim(const ClaimRequest *req, bool columns_0_1_0);	/* rows in SPI_tuptable */
extern int	outbox_lock_claimable(const ClaimRequest *req, bool heads_only);	/* likewise */
extern void outbox_lease_many(Datum ids, const char *consumer, TimestampTz as_of,
							  TimestampTz lock_until);
extern int	outbox_mark_succeeded_many(Datum ids, const char *consumer,
									   TimestampTz published_at, bool by_lock);
extern int	outbox_mark_failed_many(Datum ids, Datum reasons, Datum next_attempts,
									Datum max_attempts, Datum not_sent, Datum expired,
									const char *consumer, TimestampTz failed_at,
									bool by_lock);
extern int64 outbox_purge_batch(TimestampTz cutoff, int limit);
extern TimestampTz outbox_next_due(const RouteFilter *routes);
extern TimestampTz outbox_first_unfinished(TimestampTz from, const RouteFilter *routes);
extern int	outbox_leased_by(const char *consumer);	/* rows in SPI_tuptable */
extern void outbox_release_leases(Datum ids, const char *consumer, TimestampTz at);
extern int64 retry_backoff_ms(int attempt, int64 base_ms, int64 max_ms);
extern TimestampTz outbox_time_plus_us(TimestampTz t, int64 us, const char *what);

#endif							/* TXOUTBOX_OUTBOX_H */
