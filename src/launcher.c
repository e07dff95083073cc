/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: a static background worker, connected to no database
 *	  (it reads only the shared catalog pg_database), that keeps
 *	  txoutbox.workers dispatchers running for each database that
 *	  txoutbox.database names ("*": every database with the extension).
 *
 * Each pass (every LAUNCHER_CHECK_MS, or at once when its latch is set: a
 * reload, a CREATE EXTENSION, a dispatcher that exited) reads pg_database
 * and gives each database served an entry in shared memory, keyed by OID
 * (so a renamed database is followed, under its new name), and frees the
 * entries of the databases no longer served once their dispatchers have
 * left.  Under "*", a database is served if it accepts connections and is
 * no template; a new one gets a single dispatcher first, which either
 * finds the extension (then the database gets all of its dispatchers) or
 * says it found none and exits; such a database is looked at again after
 * a CREATE EXTENSION anywhere (ddl_watch.c) or every REPROBE_MS.
 *
 * While nobody is dropping, renaming or copying a database, each of its
 * slots below "wanted" gets a dispatcher, dispatcher i of every database
 * before dispatcher i + 1 of any.  One that crashed or failed is restarted
 * after a delay that grows while they keep exiting quickly; one that
 * stopped on purpose (no longer wanted) is restarted as soon as it is
 * wanted again.  When no background worker slot is free, the slot shows
 * "waiting for a worker slot" and the log says once how many are needed.
 * A listed database that is missing is logged once and waited for.
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
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pg_compat.h"
#include "route_state.h"
#include "settings.h"
#include "shmem.h"
#include "worker.h"

#define LAUNCHER_CHECK_MS		1000
#define REPROBE_MS				600000
#define PROBES_AT_ONCE			4	/* databases looked at for the extension at once */
#define RESTART_DELAY_MIN_MS	1000
#define RESTART_DELAY_MAX_MS	60000

/* What the launcher knows of a slot's dispatcher. */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle;
	TimestampTz started;
	TimestampTz next_start;
	int			delay_ms;
} LauncherSlot;

/* What the launcher knows of a shared entry (same index). */
typedef struct LauncherEntry
{
	bool		ready;			/* nobody is dropping, renaming or copying it */
	LauncherSlot slots[TXOUTBOX_MAX_WORKERS];
} LauncherEntry;

/* A row of pg_database, as read by a pass. */
typedef struct SeenDatabase
{
	Oid			oid;
	NameData	name;
	bool		allowconn;
	bool		istemplate;
	bool		invalid;		/* a DROP DATABASE was interrupted */
} SeenDatabase;

static LauncherEntry *lentries;
static SeenDatabase *seen;
static int	nseen;

/* databases found without the extension under "*" (not served until looked at again) */
static Oid *bare;
static int	nbare;
static uint32 bare_generation;
static TimestampTz bare_since;

static List *missing_logged = NIL;	/* names logged as missing, in TopMemoryContext */
static bool full_logged = false;
static bool budget_logged = false;

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
 * Is someone dropping, renaming or copying database dboid (or about to)?
 * A conditional RowExclusiveLock on the database object conflicts with
 * DROP's and RENAME's AccessExclusiveLock and with the ShareLock CREATE
 * DATABASE ... TEMPLATE takes on its template.  In a transaction.  Also
 * used by the dispatchers (dispatcher.c).
 */
bool
worker_database_busy(Oid dboid)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, dboid, 0);
	if (LockAcquire(&tag, RowExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, RowExclusiveLock, false);
	return false;
}

/*
 * Read pg_database into seen[].  A heap scan: the launcher is connected to
 * no database, so it cannot use the catalog caches (as the logical
 * replication launcher does).  In a transaction.
 */
static void
read_databases(void)
{
	Relation	rel = table_open(DatabaseRelationId, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, NULL);
	HeapTuple	tup;
	int			size = 16;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	if (seen)
		pfree(seen);
	seen = palloc(sizeof(SeenDatabase) * size);
	nseen = 0;
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		SeenDatabase *s;

		if (nseen == size)
		{
			size *= 2;
			seen = repalloc(seen, sizeof(SeenDatabase) * size);
		}
		s = &seen[nseen++];
		s->oid = db->oid;
		s->name = db->datname;
		s->allowconn = db->datallowconn;
		s->istemplate = db->datistemplate;
		s->invalid = compat_database_is_invalid(db);
	}
	MemoryContextSwitchTo(old);
	table_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* The row of pg_database seen with OID dboid, or NULL. */
static const SeenDatabase *
seen_row(Oid dboid)
{
	int			i;

	for (i = 0; i < nseen; i++)
		if (seen[i].oid == dboid)
			return &seen[i];
	return NULL;
}

static bool
is_bare(Oid dboid)
{
	int			i;

	for (i = 0; i < nbare; i++)
		if (bare[i] == dboid)
			return true;
	return false;
}

static void
add_bare(Oid dboid)
{
	if (is_bare(dboid))
		return;
	if (bare == NULL)
		bare = MemoryContextAlloc(TopMemoryContext, sizeof(Oid));
	else
		bare = repalloc(bare, sizeof(Oid) * (nbare + 1));
	bare[nbare++] = dboid;
}

/* Is the database of seen row s served now (under "*", the list)? */
static bool
served(const SeenDatabase *s)
{
	if (s->invalid || !s->allowconn)
		return false;
	if (settings_all_databases())
		return !s->istemplate && !is_bare(s->oid);
	return settings_database_listed(NameStr(s->name));
}

/* Log once each listed database that cannot be served, and why. */
static void
log_missing_databases(void)
{
	const char *p = txoutbox_database;
	char		name[NAMEDATALEN];
	List	   *now_missing = NIL;
	MemoryContext old;
	ListCell   *lc;

	if (settings_all_databases())
		p = NULL;
	old = MemoryContextSwitchTo(TopMemoryContext);
	while (settings_next_database(&p, name))
	{
		const SeenDatabase *s = NULL;
		const char *why;
		bool		logged = false;
		int			i;

		for (i = 0; i < nseen && s == NULL; i++)
			if (strcmp(NameStr(seen[i].name), name) == 0)
				s = &seen[i];
		if (s != NULL && !s->invalid && s->allowconn)
			continue;
		why = s == NULL ? "does not exist" :
			s->invalid ? "is invalid (an interrupted DROP DATABASE)" : "does not allow connections";
		now_missing = lappend(now_missing, pstrdup(name));
		foreach(lc, missing_logged)
			if (strcmp((char *) lfirst(lc), name) == 0)
				logged = true;
		if (!logged)
			ereport(LOG,
					(errmsg("txoutbox: database \"%s\" %s; waiting for it", name, why),
					 errhint("Set txoutbox.database to the databases where CREATE EXTENSION txoutbox was run, or to *.")));
	}
	list_free_deep(missing_logged);
	missing_logged = now_missing;
	MemoryContextSwitchTo(old);
}

/* Forget the launcher's own state of entry e's slots (a new database there). */
static void
reset_local_entry(int e)
{
	int			i;

	for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
	{
		LauncherSlot *s = &lentries[e].slots[i];

		if (s->handle)
			pfree(s->handle);
		s->handle = NULL;
		s->started = 0;
		s->next_start = 0;
		s->delay_ms = RESTART_DELAY_MIN_MS;
	}
	lentries[e].ready = false;
}

static bool
entry_has_process(const DatabaseEntry *entry)
{
	int			i;

	for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
		if (entry->workers[i].pid != 0)
			return true;
	return false;
}

/*
 * Match the shared entries to the databases served now (see the file
 * header).  Takes the lock; in no transaction.
 */
static void
update_entries(void)
{
	bool		all = settings_all_databases();
	int			probing = 0;
	int			e,
				i;

	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);

	/* entries of databases no longer served (or found bare) let go */
	for (e = 0; e < txoutbox_shared->ndatabases; e++)
	{
		DatabaseEntry *entry = &txoutbox_shared->databases[e];
		const SeenDatabase *s;

		if (!OidIsValid(entry->dboid))
			continue;
		if (entry->no_extension && all)
			add_bare(entry->dboid);
		s = seen_row(entry->dboid);
		if (s != NULL && served(s))
		{
			entry->name = s->name;	/* a rename is followed */
			continue;
		}
		entry->wanted = 0;
		if (!entry_has_process(entry))
		{
			if (s == NULL)
				route_state_forget_database(entry->dboid); /* dropped */
			memset(entry, 0, sizeof(*entry));	/* dboid InvalidOid: free */
			reset_local_entry(e);
		}
	}

	/* under "*", databases still being looked at for the extension */
	for (e = 0; e < txoutbox_shared->ndatabases; e++)
		if (all && OidIsValid(txoutbox_shared->databases[e].dboid) &&
			!txoutbox_shared->databases[e].has_extension)
			probing++;

	/* databases served now get an entry (none with txoutbox.workers = 0) */
	for (i = 0; i < nseen && txoutbox_workers > 0; i++)
	{
		DatabaseEntry *entry = NULL;
		DatabaseEntry *free_entry = NULL;
		int			free_index = -1;

		if (!served(&seen[i]))
			continue;
		for (e = 0; e < txoutbox_shared->ndatabases && entry == NULL; e++)
		{
			DatabaseEntry *x = &txoutbox_shared->databases[e];

			if (x->dboid == seen[i].oid)
				entry = x;
			else if (!OidIsValid(x->dboid) && free_entry == NULL)
			{
				free_entry = x;
				free_index = e;
			}
		}
		if (entry == NULL && free_entry == NULL)
		{
			if (!full_logged)
				ereport(LOG,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("txoutbox: more than txoutbox.max_databases (%d) databases to serve: database \"%s\" is not served",
								txoutbox_shared->ndatabases, NameStr(seen[i].name)),
						 errhint("Raise txoutbox.max_databases (it takes effect at the next server start).")));
			full_logged = true;
			continue;
		}
		if (entry == NULL && all && probing >= PROBES_AT_ONCE)
			continue;			/* its turn comes when a look ends */
		if (entry == NULL)
		{
			if (all)
				probing++;
			entry = free_entry;
			memset(entry, 0, sizeof(*entry));
			entry->dboid = seen[i].oid;
			entry->name = seen[i].name;
			reset_local_entry(free_index);
		}
		/* under "*", one dispatcher looks for the extension first */
		entry->wanted = (all && !entry->has_extension) ? Min(1, txoutbox_workers) : txoutbox_workers;
	}
	LWLockRelease(txoutbox_shared->lock);
}

/* Note which served databases nobody is dropping, renaming or copying.  In a transaction. */
static void
check_ready(void)
{
	int			e;

	for (e = 0; e < txoutbox_shared->ndatabases; e++)
	{
		Oid			dboid = txoutbox_shared->databases[e].dboid;

		lentries[e].ready = OidIsValid(dboid) && !worker_database_busy(dboid);
	}
}

/* Start dispatcher slot of entry e; NULL when no background worker slot is free. */
static BackgroundWorkerHandle *
start_dispatcher(int e, int slot)
{
	DatabaseEntry *entry = &txoutbox_shared->databases[e];
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	Oid			dboid = entry->dboid;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "txoutbox");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "txoutbox_dispatcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "txoutbox worker %d %s", slot, NameStr(entry->name));
	snprintf(worker.bgw_type, BGW_MAXLEN, "txoutbox worker");
	memcpy(worker.bgw_extra, &dboid, sizeof(dboid));
	worker.bgw_main_arg = Int32GetDatum(e * TXOUTBOX_MAX_WORKERS + slot);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return NULL;
	return handle;
}

/* The pid of the dispatcher in slot i of entry e (0: none), and whether the last one stopped on purpose. */
static pid_t
slot_owner(int e, int i, bool *on_purpose)
{
	WorkerSlot *ws = &txoutbox_shared->databases[e].workers[i];
	pid_t		pid;

	LWLockAcquire(txoutbox_shared->lock, LW_SHARED);
	pid = ws->pid;
	if (on_purpose)
		*on_purpose = ws->stopped_on_purpose;
	LWLockRelease(txoutbox_shared->lock);
	return pid;
}

/* Set slot i of entry e to state (the launcher's own states: starting, no slot). */
static void
set_slot_state(int e, int i, WorkerState state)
{
	WorkerSlot *ws = &txoutbox_shared->databases[e].workers[i];

	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	if (ws->pid == 0)
		ws->state = state;
	ws->stopped_on_purpose = false;
	LWLockRelease(txoutbox_shared->lock);
}

/*
 * Keep slot i of entry e as wanted now; returns how long until it needs
 * looking at again (ms), or LAUNCHER_CHECK_MS.
 */
static long
tend_slot(int e, int i, TimestampTz now)
{
	LauncherSlot *s = &lentries[e].slots[i];
	DatabaseEntry *entry = &txoutbox_shared->databases[e];
	pid_t		pid;
	bool		on_purpose = false;
	bool		running = (s->handle != NULL &&
						   GetBackgroundWorkerPid(s->handle, &pid) != BGWH_STOPPED) ||
		slot_owner(e, i, NULL) != 0;	/* started by an earlier launcher */

	if (s->delay_ms < RESTART_DELAY_MIN_MS)
		s->delay_ms = RESTART_DELAY_MIN_MS;
	if (!OidIsValid(entry->dboid) || i >= entry->wanted)
	{
		/* it exits on its own within a second (it checks "wanted") */
		if (entry->workers[i].state == WORKER_NO_SLOT)
			set_slot_state(e, i, WORKER_STOPPED);
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
		(void) slot_owner(e, i, &on_purpose);
		if (on_purpose || TimestampDifferenceExceeds(s->started, now, RESTART_DELAY_MAX_MS))
			s->delay_ms = RESTART_DELAY_MIN_MS;
		else
			s->delay_ms = Min(s->delay_ms * 2, RESTART_DELAY_MAX_MS);
		s->next_start = on_purpose ? now : TimestampTzPlusMilliseconds(now, s->delay_ms);
	}
	if (!lentries[e].ready)
		return LAUNCHER_CHECK_MS;
	if (now >= s->next_start)
	{
		/* whatever the new one does, its exit is not taken for on purpose */
		set_slot_state(e, i, WORKER_STARTING);
		s->handle = start_dispatcher(e, i);
		s->started = now;
		if (s->handle == NULL)
		{
			set_slot_state(e, i, WORKER_NO_SLOT);
			s->next_start = TimestampTzPlusMilliseconds(now, LAUNCHER_CHECK_MS);
		}
		return LAUNCHER_CHECK_MS;
	}
	return TimestampDifferenceMilliseconds(now, s->next_start) + 1;
}

/* Log once (until all start again) that dispatchers could not start, and how many workers are needed. */
static void
report_budget(void)
{
	int			missing = 0;
	int			wanted = 0;
	int			ndb = 0;
	int			e,
				i;

	LWLockAcquire(txoutbox_shared->lock, LW_SHARED);
	for (e = 0; e < txoutbox_shared->ndatabases; e++)
	{
		DatabaseEntry *entry = &txoutbox_shared->databases[e];

		if (!OidIsValid(entry->dboid) || entry->wanted == 0)
			continue;
		if (settings_all_databases() && !entry->has_extension)
			continue;			/* a look for the extension, not a dispatcher */
		ndb++;
		wanted += entry->wanted;
		for (i = 0; i < entry->wanted; i++)
			if (entry->workers[i].state == WORKER_NO_SLOT)
				missing++;
	}
	LWLockRelease(txoutbox_shared->lock);

	if (missing == 0)
	{
		budget_logged = false;
		return;
	}
	if (budget_logged)
		return;
	budget_logged = true;
	ereport(LOG,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("txoutbox: %d of %d dispatchers could not start: no free background worker slot",
					missing, wanted),
			 errdetail("txoutbox needs %d background workers: the launcher and %d dispatchers for %d database(s); max_worker_processes is %d and other background workers use some.",
					   wanted + 1, wanted, ndb, max_worker_processes),
			 errhint("Raise max_worker_processes, or lower txoutbox.workers; txoutbox.worker_status() shows the dispatchers waiting for a worker slot.")));
}

/* Entry point of the launcher. */
void
txoutbox_launcher_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("txoutbox launcher");

	/* (shared entries a previous launcher left stay: matched by OID) */
	lentries = MemoryContextAllocZero(TopMemoryContext,
									  sizeof(LauncherEntry) * txoutbox_shared->ndatabases);
	bare_generation = pg_atomic_read_u32(&txoutbox_shared->extension_generation);
	bare_since = GetCurrentTimestamp();
	txoutbox_shared->launcher_pid = MyProcPid;
	txoutbox_shared->launcher_latch = MyLatch;

	for (;;)
	{
		TimestampTz now;
		long		wait_ms = LAUNCHER_CHECK_MS;
		uint32		generation;
		int			e,
					i;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			full_logged = false;
		}

		/* a CREATE EXTENSION somewhere, or a long while: look at bare databases again */
		now = GetCurrentTimestamp();
		generation = pg_atomic_read_u32(&txoutbox_shared->extension_generation);
		if (generation != bare_generation || TimestampDifferenceExceeds(bare_since, now, REPROBE_MS))
		{
			nbare = 0;
			bare_generation = generation;
			bare_since = now;
			LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
			for (e = 0; e < txoutbox_shared->ndatabases; e++)
				txoutbox_shared->databases[e].no_extension = false;
			LWLockRelease(txoutbox_shared->lock);
		}

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		read_databases();
		CommitTransactionCommand();
		log_missing_databases();
		update_entries();
		StartTransactionCommand();
		check_ready();
		CommitTransactionCommand();

		now = GetCurrentTimestamp();
		for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
			for (e = 0; e < txoutbox_shared->ndatabases; e++)
				if (OidIsValid(txoutbox_shared->databases[e].dboid))
					wait_ms = Min(wait_ms, tend_slot(e, i, now));
		report_budget();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
	}
}
