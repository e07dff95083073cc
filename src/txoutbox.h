/*-------------------------------------------------------------------------
 *
 * txoutbox.h
 *	  Declarations shared by the txoutbox extension's source files: the
 *	  settings, the shared-memory state of the background workers, the
 *	  message state machine used by both the SQL functions and the
 *	  dispatcher, and UUIDv7 generation.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_H
#define TXOUTBOX_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/uuid.h"

#define TXOUTBOX_MAX_WORKERS		32
#define TXOUTBOX_ERROR_LEN			512
#define TXOUTBOX_MAX_TOPIC_LEN		255
#define TXOUTBOX_MAX_CLAIM			10000
#define TXOUTBOX_MAX_KEY_BYTES		1024	/* message_key is indexed */

/* settings (txoutbox.c) */
extern char *txoutbox_database;
extern int	txoutbox_workers;
extern int	txoutbox_batch_size;
extern int	txoutbox_poll_interval_ms;
extern int	txoutbox_lock_timeout_ms;
extern int	txoutbox_max_attempts;
extern int	txoutbox_retry_base_delay_ms;
extern int	txoutbox_retry_max_delay_ms;
extern int	txoutbox_retention_ms;
extern int	txoutbox_http_max_concurrency;
extern int	txoutbox_http_timeout_ms;
extern char *txoutbox_http_allowed_hosts;
extern char *txoutbox_tenant_id;

/* What a dispatcher is doing, as shown by worker_status(). */
typedef enum WorkerState
{
	WORKER_STOPPED = 0,
	WORKER_STARTING,
	WORKER_IDLE,
	WORKER_DISPATCHING,
	WORKER_WAITING_FOR_EXTENSION,
	WORKER_RECOVERY,
	WORKER_ERROR_BACKOFF
} WorkerState;

/* One dispatcher's slot in shared memory; protected by TxoutboxShared->lock. */
typedef struct WorkerSlot
{
	pid_t		pid;
	Latch	   *latch;			/* set to wake it; read without the lock */
	WorkerState state;
	TimestampTz started_at;
	TimestampTz last_round_at;
	int64		rounds;
	int64		published;
	int64		failed;
	char		last_error[TXOUTBOX_ERROR_LEN];
} WorkerSlot;

typedef struct TxoutboxShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	WorkerSlot	workers[TXOUTBOX_MAX_WORKERS];

	/*
	 * Bumped by each commit that made a message claimable earlier than the
	 * time it was written (see dispatch.c, "low-water mark").
	 */
	pg_atomic_uint64 rescan_generation;
} TxoutboxShared;

extern TxoutboxShared *txoutbox_shared;
extern bool txoutbox_preloaded;

/* txoutbox.c */
extern void txoutbox_require_preload(void);
extern const char *txoutbox_bound_tenant(void);
extern void txoutbox_wake_at_commit(void);
extern void txoutbox_rescan_at_commit(void);
extern void txoutbox_wake_workers(void);

/* uuidv7.c */
extern void uuidv7_generate(pg_uuid_t *uuid);
extern void uuidv7_floor(TimestampTz ts, pg_uuid_t *uuid);
extern void uuid_to_cstring(const pg_uuid_t *uuid, char *out);	/* 37 bytes */

/* low_water.c: where the dispatcher's claim scan may start */
extern TimestampTz low_water_mark(Datum route_exact, Datum route_prefixes);

/* message_insert.c: enqueue()'s insert without a per-row executor */
#define MESSAGE_NATTS 18		/* columns of txoutbox.messages */
extern bool message_insert(Datum *values, bool *isnull, Datum *result);

/* outbox.c: the state machine, shared by the SQL functions and dispatch.c */
typedef struct ClaimRequest
{
	const char *consumer;
	int			max_messages;
	const char *topic;			/* NULL: any topic */
	TimestampTz lock_until;
	TimestampTz as_of;
	Datum		route_exact;	/* text[] of exact topics, or 0 for no filter */
	Datum		route_prefixes; /* text[] of topic prefixes, or 0 */
	const char *tenant;			/* only this tenant's messages, or NULL */
	TimestampTz scan_from;		/* no claimable message is available before
								 * this (the dispatcher's low-water mark), or
								 * DT_NOBEGIN */
} ClaimRequest;

extern int	outbox_claim(const ClaimRequest *req);	/* rows in SPI_tuptable */
extern int	outbox_lock_claimable(const ClaimRequest *req);	/* likewise */
extern void outbox_lease_many(Datum ids, const char *consumer, TimestampTz as_of,
							  TimestampTz lock_until);
extern int	outbox_mark_succeeded_many(Datum ids, const char *consumer,
									   TimestampTz published_at, bool by_lock);
extern int	outbox_mark_failed_many(Datum ids, Datum reasons, Datum next_attempts,
									Datum max_attempts, Datum not_sent,
									const char *consumer, TimestampTz failed_at,
									bool by_lock);
extern int64 outbox_purge_batch(TimestampTz cutoff, int limit);
extern TimestampTz outbox_next_due(Datum route_exact, Datum route_prefixes);
extern TimestampTz outbox_first_unfinished(TimestampTz from, Datum route_exact,
										   Datum route_prefixes);
extern int64 retry_backoff_ms(int attempt, int64 base_ms, int64 max_ms);
extern TimestampTz outbox_time_plus_us(TimestampTz t, int64 us, const char *what);

/* dispatch.c */
typedef struct DispatchOptions
{
	const char *consumer;
	const char *topic;
	int			max_messages;
	int64		retry_delay_ms; /* < 0: exponential backoff */
	TimestampTz lock_until;		/* 0: now + txoutbox.lock_timeout */
	bool		own_transactions;	/* worker: claim, publish, mark in separate
									 * short transactions */
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
	int			in_flight;		/* external publishing still under way */
} DispatchCounts;

/* A publisher's share of a round's messages (dispatch.c). */
typedef struct PublishBatch
{
	const struct Publisher *publisher;
	struct PublishItem *items;
	int			n;
} PublishBatch;

extern void dispatch_round(const DispatchOptions *opts, DispatchCounts *counts);
extern void dispatch_collect(const DispatchOptions *opts, DispatchCounts *counts,
							 PublishBatch *batches, int nbatches, long wait_ms);
extern MemoryContext worker_xact_begin(const char *activity);
extern void worker_xact_commit(MemoryContext cxt);

/* worker.c */
extern void txoutbox_register_launcher(void);

#endif							/* TXOUTBOX_H */
