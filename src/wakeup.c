/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  The wake-on-commit transaction callback.
 *
 * enqueue(), replay() and the other calls that make messages claimable set
 * a backend-local flag (wakeup_at_commit).  The transaction callback is
 * registered once per backend (the first time the flag is set), and on
 * commit sets the latch of every dispatcher of this database (no other:
 * each database's commits wake its own); on abort it only clears the flag,
 * so a rollback wakes nobody.  A latch set while a dispatcher is busy stays
 * set, so no wake-up is lost.  A commit that made a message claimable
 * earlier than the time it was written (a replay, a past available_at)
 * also bumps rescan_generation, so that the dispatchers look behind their
 * low-water mark (low_water.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"

#include "low_water.h"
#include "shmem.h"
#include "wakeup.h"

static bool wake_pending = false;
static bool rescan_pending = false;
static bool xact_callback_registered = false;

/* Commit with a pending wake-up: wake the dispatchers.  Abort: forget it. */
static void
wakeup_xact_callback(XactEvent event, void *arg)
{
	if (!wake_pending)
		return;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (rescan_pending && txoutbox_shared != NULL)
				pg_atomic_fetch_add_u64(&txoutbox_shared->rescan_generation, 1);
			wake_pending = false;
			rescan_pending = false;
			wakeup_dispatchers();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = false;
			rescan_pending = false;
			break;
		default:
			break;
	}
}

/* Ask for the dispatchers to be woken when the current transaction commits. */
void
wakeup_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wakeup_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_pending = true;
}

/*
 * Ask for a wake-up at commit that also makes the dispatchers rescan from
 * the start of the claim order: this transaction made a message claimable
 * at a time earlier than now.
 */
void
wakeup_rescan_at_commit(void)
{
	wakeup_at_commit();
	rescan_pending = true;
	low_water_forget();			/* and this process at once */
}

/* Set the latch of every running dispatcher of this database. */
void
wakeup_dispatchers(void)
{
	static DatabaseEntry *entry = NULL; /* this database's, looked up once */
	int			i;

	if (txoutbox_shared == NULL)
		return;
	if (entry == NULL || entry->dboid != MyDatabaseId)
		entry = shmem_database_entry(MyDatabaseId);
	if (entry == NULL)
		return;
	for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
	{
		Latch	   *latch = entry->workers[i].latch;

		if (latch != NULL)
			SetLatch(latch);
	}
}
