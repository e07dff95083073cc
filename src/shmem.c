/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  txoutbox's shared memory (shmem.h): requested at preload through the
 *	  shmem request hook, created or attached under AddinShmemInitLock and
 *	  initialised only when first created.
 *
 * Locking: one LWLock guards the database entries and their worker slots.
 * Latch pointers and an entry's dboid are read without it: setting the
 * latch of a process that has just exited is harmless, and a wake-up that
 * finds an entry being reassigned wakes at most a dispatcher that looks
 * and sleeps again.  The generations are atomics.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"

#include "route_state.h"
#include "shmem.h"

TxoutboxShared *txoutbox_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Size of TxoutboxShared with txoutbox.max_databases entries. */
static Size
shared_size(void)
{
	return add_size(offsetof(TxoutboxShared, databases),
					mul_size(sizeof(DatabaseEntry), txoutbox_max_databases));
}

/* Ask for our shared memory and our LWLock. */
static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(add_size(MAXALIGN(shared_size()), route_state_shmem_size()));
	RequestNamedLWLockTranche("txoutbox", 2);	/* the slots; route state */
}

/* Attach to (and on first use initialise) our shared memory. */
static void
shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	txoutbox_shared = ShmemInitStruct("txoutbox", shared_size(), &found);
	if (!found)
	{
		memset(txoutbox_shared, 0, shared_size());
		txoutbox_shared->lock = &(GetNamedLWLockTranche("txoutbox"))->lock;
		pg_atomic_init_u32(&txoutbox_shared->extension_generation, 0);
		pg_atomic_init_u64(&txoutbox_shared->rescan_generation, 0);
		txoutbox_shared->ndatabases = txoutbox_max_databases;
	}
	route_state_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/* Chain our hooks; called from _PG_init under shared_preload_libraries. */
void
shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
}

/*
 * The entry of database dboid, or NULL when it is not served.  Without the
 * lock (see the file header): callers that act on the entry's slots check
 * its dboid again under the lock.
 */
DatabaseEntry *
shmem_database_entry(Oid dboid)
{
	int			i;

	if (txoutbox_shared == NULL || !OidIsValid(dboid))
		return NULL;
	for (i = 0; i < txoutbox_shared->ndatabases; i++)
		if (txoutbox_shared->databases[i].dboid == dboid)
			return &txoutbox_shared->databases[i];
	return NULL;
}
