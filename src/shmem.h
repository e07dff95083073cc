/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  txoutbox's shared memory: an entry per database served (up to
 *	  txoutbox.max_databases), each with one slot per dispatcher (what
 *	  worker_status() shows, and the latch a commit sets); the launcher's
 *	  latch; and the rescan generation of the low-water mark.  Defined in
 *	  shmem.c.
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
	WORKER_ERROR_BACKOFF,
	WORKER_NO_SLOT				/* the launcher found no free background
								 * worker slot for it */
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

/*
 * A database served, and its dispatchers' slots.  The launcher assigns and
 * frees entries (under the lock; dboid InvalidOid: free) and sets wanted;
 * an entry is freed only when none of its slots has a process.
 */
typedef struct DatabaseEntry
{
	Oid			dboid;			/* read without the lock by wake-ups */
	NameData	name;
	int			wanted;			/* dispatchers it should have now */
	bool		no_extension;	/* under "*": a dispatcher found no
								 * txoutbox here (the launcher lets it go) */
	bool		has_extension;	/* a dispatcher found txoutbox here */
	TimestampTz leave_watch_until;	/* a DROP, rename or copy of the
									 * database may come: look often */
	WorkerSlot	workers[TXOUTBOX_MAX_WORKERS];
} DatabaseEntry;

typedef struct TxoutboxShared
{
	LWLock	   *lock;			/* the entries and their slots */
	pid_t		launcher_pid;
	Latch	   *launcher_latch; /* set to have it look again at once */

	/* bumped by each commit of a CREATE EXTENSION (ddl_watch.c) */
	pg_atomic_uint32 extension_generation;

	/*
	 * Bumped by each commit that made a message claimable earlier than the
	 * time it was written (low_water.c).
	 */
	pg_atomic_uint64 rescan_generation;

	int			ndatabases;		/* txoutbox.max_databases */
	DatabaseEntry databases[FLEXIBLE_ARRAY_MEMBER];
} TxoutboxShared;

extern TxoutboxShared *txoutbox_shared;

extern void shmem_install_hooks(void);
extern DatabaseEntry *shmem_database_entry(Oid dboid);

#endif							/* TXOUTBOX_SHMEM_H */
