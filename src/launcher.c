/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: a static background worker, connected to no database
 *	  (it reads only the shared catalog pg_database), that keeps
 *	  txoutbox.workers dispatchers running for txoutbox.database.
 *
 * While the database exists and nobody is dropping or renaming it, each
 * dispatcher slot below txoutbox.workers gets a dispatcher.  One that
 * crashed or failed is restarted after a delay that grows while they keep
 * exiting quickly; one that stopped on purpose (it was no longer wanted:
 * fewer workers, another database, the database being dropped) is
 * restarted as soon as it is wanted again.  A missing database is logged
 * once and waited for, so nothing crash-loops.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "shmem.h"
#include "worker.h"

#define LAUNCHER_CHECK_MS		5000
#define DROP_CHECK_INTERVAL_MS	1000
#define RESTART_DELAY_MIN_MS	1000
#define RESTART_DELAY_MAX_MS	60000

/* Register the launcher; called from _PG_init under preload. */
void
launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "txoutbox");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "txoutbox_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "txoutbox launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "txoutbox launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * The OID of database dbname, or InvalidOid.  A heap scan of pg_database:
 * the launcher is connected to no database, so it cannot use the catalog
 * caches (as the logical replication launcher does).  In a transaction.
 */
static Oid
find_database(const char *dbname)
{
	Relation	rel = table_open(DatabaseRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, NULL);
	HeapTuple	tup;
	Oid			dboid = InvalidOid;

	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), dbname) == 0)
		{
			dboid = db->oid;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return dboid;
}

/* Does the database exist, and is nobody dropping or renaming it? */
static bool
database_ready(const char *dbname, bool *exists)
{
	Oid			dboid;
	bool		ready = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	dboid = find_database(dbname);
	*exists = OidIsValid(dboid);
	if (*exists)
	{
		LOCKTAG		tag;

		SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, dboid, 0);
		if (LockAcquire(&tag, AccessShareLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
		{
			LockRelease(&tag, AccessShareLock, false);
			ready = true;
		}
	}
	CommitTransactionCommand();
	return ready;
}

/* Start dispatcher number slot for dbname; NULL when no slot is free. */
static BackgroundWorkerHandle *
start_dispatcher(int slot, const char *dbname)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "txoutbox");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "txoutbox_dispatcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "txoutbox worker %d", slot);
	snprintf(worker.bgw_type, BGW_MAXLEN, "txoutbox worker");
	strlcpy(worker.bgw_extra, dbname, BGW_EXTRALEN);
	worker.bgw_main_arg = Int32GetDatum(slot);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("txoutbox: could not start worker %d: no free background worker slot", slot),
				 errhint("Raise max_worker_processes (txoutbox needs txoutbox.workers + 1).")));
		return NULL;
	}
	return handle;
}

/* The pid of the dispatcher that owns slot i (0: none), and whether the last one stopped on purpose. */
static pid_t
slot_owner(int i, bool *on_purpose)
{
	pid_t		pid;

	LWLockAcquire(txoutbox_shared->lock, LW_SHARED);
	pid = txoutbox_shared->workers[i].pid;
	if (on_purpose)
		*on_purpose = txoutbox_shared->workers[i].stopped_on_purpose;
	LWLockRelease(txoutbox_shared->lock);
	return pid;
}

/* What the launcher knows of each slot's dispatcher. */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle;
	TimestampTz started;
	TimestampTz next_start;
	int			delay_ms;
} LauncherSlot;

/*
 * Keep slot i's dispatcher as wanted now; returns how long until it needs
 * looking at again (ms), or LAUNCHER_CHECK_MS.
 */
static long
tend_slot(LauncherSlot *s, int i, const char *dbname, TimestampTz now)
{
	pid_t		pid;
	bool		on_purpose = false;
	bool		running = (s->handle != NULL &&
						   GetBackgroundWorkerPid(s->handle, &pid) != BGWH_STOPPED) ||
		slot_owner(i, NULL) != 0;	/* started by an earlier launcher */

	if (i >= txoutbox_workers)
	{
		/* one started by an earlier launcher exits on the reload itself */
		if (running && s->handle != NULL)
			TerminateBackgroundWorker(s->handle);
		/* stopped because it is not wanted: no backoff when it is again */
		s->delay_ms = RESTART_DELAY_MIN_MS;
		s->next_start = 0;
		return LAUNCHER_CHECK_MS;
	}
	if (running)
		return LAUNCHER_CHECK_MS;
	if (s->handle != NULL)
	{
		/* it exited: on purpose, or after a while, restart now; else back off */
		pfree(s->handle);
		s->handle = NULL;
		(void) slot_owner(i, &on_purpose);
		if (on_purpose || TimestampDifferenceExceeds(s->started, now, RESTART_DELAY_MAX_MS))
			s->delay_ms = RESTART_DELAY_MIN_MS;
		else
			s->delay_ms = Min(s->delay_ms * 2, RESTART_DELAY_MAX_MS);
		s->next_start = on_purpose ? now : TimestampTzPlusMilliseconds(now, s->delay_ms);
	}
	if (now >= s->next_start)
	{
		/* whatever the new one does, its exit is not taken for on purpose */
		LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
		txoutbox_shared->workers[i].stopped_on_purpose = false;
		LWLockRelease(txoutbox_shared->lock);
		s->handle = start_dispatcher(i, dbname);
		s->started = now;
		if (s->handle == NULL)
			s->next_start = TimestampTzPlusMilliseconds(now, LAUNCHER_CHECK_MS);
		return LAUNCHER_CHECK_MS;
	}
	return TimestampDifferenceMilliseconds(now, s->next_start) + 1;
}

/* Entry point of the launcher. */
void
txoutbox_launcher_main(Datum main_arg)
{
	LauncherSlot slots[TXOUTBOX_MAX_WORKERS];
	char		dbname[NAMEDATALEN];
	bool		missing_logged = false;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("txoutbox launcher");

	txoutbox_shared->launcher_pid = MyProcPid;
	memset(slots, 0, sizeof(slots));
	for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
		slots[i].delay_ms = RESTART_DELAY_MIN_MS;
	strlcpy(dbname, txoutbox_database, NAMEDATALEN);

	for (;;)
	{
		TimestampTz now;
		bool		exists;
		long		wait_ms = LAUNCHER_CHECK_MS;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(dbname, txoutbox_database) != 0)
			{
				/* dispatchers of the old database exit when they see this */
				strlcpy(dbname, txoutbox_database, NAMEDATALEN);
				missing_logged = false;
			}
		}

		now = GetCurrentTimestamp();
		if (!database_ready(dbname, &exists))
		{
			if (!exists && !missing_logged)
				ereport(LOG,
						(errmsg("txoutbox: database \"%s\" does not exist; waiting for it", dbname),
						 errhint("Set txoutbox.database to the database where CREATE EXTENSION txoutbox was run.")));
			missing_logged = !exists;
			wait_ms = exists ? DROP_CHECK_INTERVAL_MS : LAUNCHER_CHECK_MS;
		}
		else
		{
			missing_logged = false;
			for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
				wait_ms = Min(wait_ms, tend_slot(&slots[i], i, dbname, now));
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
	}
}
