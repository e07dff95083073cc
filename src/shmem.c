/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  txoutbox's shared memory (shmem.h): requested at preload through the
 *	  shmem request hook, created or attached under AddinShmemInitLock and
 *	  initialised only when first created.
 *
 * Locking: one LWLock guards the worker slots.  Latch pointers are read
 * without it: setting the latch of a process that has just exited is
 * harmless.  rescan_generation is an atomic.
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

/* Ask for our shared memory and our LWLock. */
static void
shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(add_size(MAXALIGN(sizeof(TxoutboxShared)), route_state_shmem_size()));
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
	txoutbox_shared = ShmemInitStruct("txoutbox", sizeof(TxoutboxShared), &found);
	if (!found)
	{
		memset(txoutbox_shared, 0, sizeof(TxoutboxShared));
		txoutbox_shared->lock = &(GetNamedLWLockTranche("txoutbox"))->lock;
		pg_atomic_init_u64(&txoutbox_shared->rescan_generation, 0);
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
