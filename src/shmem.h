/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  txoutbox's shared memory: one slot per dispatcher (what
 *	  worker_status() shows, and the latch a commit sets), and the rescan
 *	  generation of the low-water mark.  Defined in shmem.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_SHMEM_H
#define TXOUTBOX_SHMEM_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "settings.h"

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

/* One dispatcher's slot; protected by TxoutboxShared->lock. */
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
	bool		stopped_on_purpose; /* it exited because it was no longer
									 * wanted (not a crash or an error) */
} WorkerSlot;

typedef struct TxoutboxShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	WorkerSlot	workers[TXOUTBOX_MAX_WORKERS];

	/*
	 * Bumped by each commit that made a message claimable earlier than the
	 * time it was written (low_water.c).
	 */
	pg_atomic_uint64 rescan_generation;
} TxoutboxShared;

extern TxoutboxShared *txoutbox_shared;

extern void shmem_install_hooks(void);

#endif							/* TXOUTBOX_SHMEM_H */
