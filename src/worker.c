/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background workers: a launcher, and the dispatchers it starts.
 *	  Also worker_status().
 *
 * The launcher is a static background worker connected to no database (it
 * reads only the shared catalog pg_database).  While txoutbox.database
 * exists and is not being dropped, it keeps txoutbox.workers dispatchers
 * running, restarting one that exited after a delay that grows while they
 * keep exiting quickly.  A missing database is logged once and waited for,
 * so nothing crash-loops.
 *
 * A dispatcher connects to txoutbox.database and loops: run a round
 * (dispatch.c), then sleep on its latch until a commit wakes it, the next
 * delayed or retrying message is due, or txoutbox.poll_interval passes.
 * While webhooks are in flight it waits on them instead (on the http
 * publisher's sockets, at most IN_FLIGHT_WAIT_MS at a time, and not past a
 * commit setting its latch), recording each that finished, and runs a full
 * round when woken or due.  It
 * wakes at least once a second to notice a DROP DATABASE (or rename) waiting
 * for it, and then exits so the drop is not blocked.  Errors in a round are
 * logged (once while they repeat), recorded for worker_status(), and
 * followed by a growing pause; they never end the process.  SIGTERM exits
 * at the next interrupt check, SIGHUP reloads the settings.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "txoutbox.h"

#define DROP_CHECK_INTERVAL_MS	1000
#define LAUNCHER_CHECK_MS		5000
#define RESTART_DELAY_MIN_MS	1000
#define RESTART_DELAY_MAX_MS	60000
#define ERROR_DELAY_MAX_MS		30000
#define IN_FLIGHT_WAIT_MS		10		/* longest wait for webhooks in flight */
#define PURGE_BATCH				1000
#define PURGE_MAX_BATCHES		20
#define PURGE_INTERVAL_MS		10000	/* between passes that finished */
#define PURGE_BACKLOG_MS		100		/* after a pass that did not */

PGDLLEXPORT void txoutbox_launcher_main(Datum main_arg);
PGDLLEXPORT void txoutbox_dispatcher_main(Datum main_arg);

PG_FUNCTION_INFO_V1(txoutbox_worker_status);

static const char *const state_names[] = {
	[WORKER_STOPPED] = "stopped",
	[WORKER_STARTING] = "starting",
	[WORKER_IDLE] = "idle",
	[WORKER_DISPATCHING] = "dispatching",
	[WORKER_WAITING_FOR_EXTENSION] = "waiting for extension",
	[WORKER_RECOVERY] = "recovery",
	[WORKER_ERROR_BACKOFF] = "error backoff",
};

static int	my_slot = -1;

/* Register the launcher; called from _PG_init under preload. */
void
txoutbox_register_launcher(void)
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

/* Set this dispatcher's state (and error text, when given) in its slot. */
static void
set_worker_state(WorkerState state, const char *error)
{
	WorkerSlot *slot = &txoutbox_shared->workers[my_slot];

	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	slot->state = state;
	if (error)
		strlcpy(slot->last_error, error, TXOUTBOX_ERROR_LEN);
	LWLockRelease(txoutbox_shared->lock);
}

/* The pid of the dispatcher that owns slot i, or 0. */
static pid_t
slot_owner(int i)
{
	pid_t		pid;

	LWLockAcquire(txoutbox_shared->lock, LW_SHARED);
	pid = txoutbox_shared->workers[i].pid;
	LWLockRelease(txoutbox_shared->lock);
	return pid;
}

/* ---- launcher ---------------------------------------------------------- */

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

/* Entry point of the launcher. */
void
txoutbox_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *handles[TXOUTBOX_MAX_WORKERS] = {0};
	TimestampTz started[TXOUTBOX_MAX_WORKERS] = {0};
	TimestampTz next_start[TXOUTBOX_MAX_WORKERS] = {0};
	int			delay_ms[TXOUTBOX_MAX_WORKERS];
	char		dbname[NAMEDATALEN];
	bool		missing_logged = false;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("txoutbox launcher");

	txoutbox_shared->launcher_pid = MyProcPid;
	for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
		delay_ms[i] = RESTART_DELAY_MIN_MS;
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
			{
				pid_t		pid;
				bool		running = (handles[i] != NULL &&
									   GetBackgroundWorkerPid(handles[i], &pid) != BGWH_STOPPED) ||
					slot_owner(i) != 0;	/* started by an earlier launcher */

				if (i >= txoutbox_workers)
				{
					/* one started by an earlier launcher exits on the reload itself */
					if (running && handles[i] != NULL)
						TerminateBackgroundWorker(handles[i]);
					continue;
				}
				if (running)
					continue;
				if (handles[i] != NULL)
				{
					/* it exited: restart soon if it ran a while, else back off */
					pfree(handles[i]);
					handles[i] = NULL;
					if (TimestampDifferenceExceeds(started[i], now, RESTART_DELAY_MAX_MS))
						delay_ms[i] = RESTART_DELAY_MIN_MS;
					else
						delay_ms[i] = Min(delay_ms[i] * 2, RESTART_DELAY_MAX_MS);
					next_start[i] = TimestampTzPlusMilliseconds(now, delay_ms[i]);
				}
				if (now >= next_start[i])
				{
					handles[i] = start_dispatcher(i, dbname);
					started[i] = now;
					if (handles[i] == NULL)
						next_start[i] = TimestampTzPlusMilliseconds(now, LAUNCHER_CHECK_MS);
				}
				else
					wait_ms = Min(wait_ms, TimestampDifferenceMilliseconds(now, next_start[i]) + 1);
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
	}
}

/* ---- dispatcher -------------------------------------------------------- */

/* Clear this dispatcher's slot on exit. */
static void
release_slot(int code, Datum arg)
{
	WorkerSlot *slot = &txoutbox_shared->workers[DatumGetInt32(arg)];

	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	slot->latch = NULL;
	slot->pid = 0;
	slot->state = WORKER_STOPPED;
	LWLockRelease(txoutbox_shared->lock);
}

/* Is a DROP DATABASE (or rename) waiting for us to leave?  In a transaction. */
static bool
database_being_dropped(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_OBJECT(tag, InvalidOid, DatabaseRelationId, MyDatabaseId, 0);
	if (LockAcquire(&tag, AccessShareLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return true;
	LockRelease(&tag, AccessShareLock, false);
	return false;
}

/*
 * Claims a previous run of this slot held are not held by anyone now (it
 * exited or crashed): make them claimable at once instead of waiting out
 * their lease.
 */
static void
release_own_leases(const char *consumer)
{
	MemoryContext cxt = worker_xact_begin("txoutbox: releasing leases");
	Datum		arg = CStringGetTextDatum(consumer);
	Oid			argtype = TEXTOID;

	/* qualified names: independent of search_path (see outbox.c) */
	if (SPI_execute_with_args("UPDATE txoutbox.messages SET available_at = pg_catalog.now()"
							  " WHERE status OPERATOR(pg_catalog.=) 'processing'"
							  "   AND locked_by OPERATOR(pg_catalog.=) $1"
							  "   AND available_at OPERATOR(pg_catalog.>) pg_catalog.now()",
							  1, &argtype, &arg, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "txoutbox: could not release leases");
	if (SPI_processed > 0)
	{
		ereport(LOG,
				(errmsg("txoutbox: %s took back %llu message(s) claimed before it restarted",
						consumer, (unsigned long long) SPI_processed)));
		txoutbox_rescan_at_commit();	/* available from now (low_water.c) */
	}
	worker_xact_commit(cxt);
}

/*
 * Retention: purge succeeded messages older than txoutbox.retention, in
 * batches of PURGE_BATCH rows, one short transaction each, at most
 * PURGE_MAX_BATCHES per call.  Returns true when it stopped with more to do.
 */
static bool
purge_old_messages(void)
{
	TimestampTz cutoff = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 -(int64) txoutbox_retention_ms);
	int			batches;

	for (batches = 0; batches < PURGE_MAX_BATCHES; batches++)
	{
		MemoryContext cxt = worker_xact_begin("txoutbox: purging succeeded messages");
		int64		deleted = outbox_purge_batch(cutoff, PURGE_BATCH);

		worker_xact_commit(cxt);
		if (deleted < PURGE_BATCH)
			return false;
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

typedef struct DispatcherState
{
	char	   *consumer;
	bool		leases_released;
	bool		waiting_logged;
	TimestampTz next_purge;
	TimestampTz next_round;		/* run a full round by then at the latest */
	int			in_flight;		/* external publishing under way */
} DispatcherState;

/* Options of this dispatcher's rounds. */
static void
dispatcher_options(DispatcherState *st, DispatchOptions *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->consumer = st->consumer;
	opts->max_messages = txoutbox_batch_size;
	opts->retry_delay_ms = -1;
	opts->own_transactions = true;
}

/* Add a round's (or a collection's) counts to this dispatcher's slot. */
static void
record_counts(const DispatchCounts *counts, bool round)
{
	WorkerSlot *slot = &txoutbox_shared->workers[my_slot];

	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	if (round)
	{
		slot->rounds++;
		slot->last_round_at = GetCurrentTimestamp();
	}
	slot->published += counts->succeeded;
	slot->failed += counts->failed;
	if (counts->last_error[0] != '\0')
		strlcpy(slot->last_error, counts->last_error, TXOUTBOX_ERROR_LEN);
	slot->state = WORKER_IDLE;
	LWLockRelease(txoutbox_shared->lock);
}

/*
 * Between rounds, while external publishing is under way: wait (on the
 * publisher's sockets, up to IN_FLIGHT_WAIT_MS or until the latch is set)
 * for some of it to finish, and record what did.
 */
static void
dispatcher_collect(DispatcherState *st)
{
	DispatchOptions opts;
	DispatchCounts counts;

	memset(&counts, 0, sizeof(counts));
	dispatcher_options(st, &opts);
	dispatch_collect(&opts, &counts, NULL, 0, IN_FLIGHT_WAIT_MS);
	st->in_flight = counts.in_flight;
	record_counts(&counts, false);
}

/*
 * One iteration of the dispatcher: checks, a dispatch round, retention.
 * Returns how long to sleep, in ms.
 */
static long
dispatcher_iteration(DispatcherState *st)
{
	DispatchOptions opts;
	DispatchCounts counts;
	bool		have_extension;
	TimestampTz now;
	long		sleep_ms = txoutbox_poll_interval_ms;
	MemoryContext cxt = CurrentMemoryContext;

	st->in_flight = 0;			/* until a round says otherwise */
	if (RecoveryInProgress())
	{
		set_worker_state(WORKER_RECOVERY, NULL);
		return txoutbox_poll_interval_ms;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (database_being_dropped())
	{
		CommitTransactionCommand();
		ereport(LOG,
				(errmsg("txoutbox: database \"%s\" is being dropped or renamed; worker exits",
						MyBgworkerEntry->bgw_extra)));
		proc_exit(0);
	}
	have_extension = OidIsValid(get_extension_oid("txoutbox", true));
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	if (!have_extension)
	{
		if (!st->waiting_logged)
			ereport(LOG,
					(errmsg("txoutbox: extension txoutbox is not installed in database \"%s\"; waiting",
							MyBgworkerEntry->bgw_extra),
					 errhint("Run CREATE EXTENSION txoutbox in that database.")));
		st->waiting_logged = true;
		st->leases_released = false;
		set_worker_state(WORKER_WAITING_FOR_EXTENSION, NULL);
		return txoutbox_poll_interval_ms;
	}
	st->waiting_logged = false;

	if (!st->leases_released)
	{
		release_own_leases(st->consumer);
		st->leases_released = true;
	}

	set_worker_state(WORKER_DISPATCHING, NULL);
	dispatcher_options(st, &opts);
	dispatch_round(&opts, &counts);
	st->in_flight = counts.in_flight;
	record_counts(&counts, true);

	now = GetCurrentTimestamp();
	if (txoutbox_retention_ms > 0 && now >= st->next_purge)
	{
		bool		more = purge_old_messages();

		st->next_purge = TimestampTzPlusMilliseconds(now, more ? PURGE_BACKLOG_MS : PURGE_INTERVAL_MS);
	}

	if (counts.claimed > 0)
		sleep_ms = 0;			/* more may be ready now (a full batch, or the
								 * next message of an ordered key) */
	else if (counts.next_due != DT_NOEND)
		sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, counts.next_due) + 1);
	/* a full round at least every DROP_CHECK_INTERVAL_MS (see header) */
	sleep_ms = Min(sleep_ms, DROP_CHECK_INTERVAL_MS);
	st->next_round = TimestampTzPlusMilliseconds(now, sleep_ms);
	return sleep_ms;
}

/* Entry point of a dispatcher. */
void
txoutbox_dispatcher_main(Datum main_arg)
{
	DispatcherState st;
	MemoryContext round_cxt;
	char		dbname[NAMEDATALEN];
	static char *last_logged_error = NULL;
	static long error_delay_ms = 0;
	static bool full_round = true;

	my_slot = DatumGetInt32(main_arg);
	strlcpy(dbname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);

	/*
	 * Our queries run with only pg_catalog on the search path, so nothing
	 * planted in public can stand in for an operator or function they use.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	{
		WorkerSlot *slot = &txoutbox_shared->workers[my_slot];

		/*
		 * One live process per slot: a launcher restarted while its
		 * dispatchers ran may start a second one.  The slot's pid is cleared
		 * when its owner exits (and shared memory is reset after a crash).
		 */
		if (slot->pid != 0 && slot->pid != MyProcPid)
		{
			pid_t		owner = slot->pid;

			LWLockRelease(txoutbox_shared->lock);
			ereport(LOG,
					(errmsg("txoutbox: worker %d is already running (pid %d); exiting",
							my_slot, (int) owner)));
			proc_exit(0);
		}
		memset(slot, 0, sizeof(*slot));
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		slot->state = WORKER_STARTING;
		slot->started_at = GetCurrentTimestamp();
	}
	LWLockRelease(txoutbox_shared->lock);
	before_shmem_exit(release_slot, Int32GetDatum(my_slot));

	memset(&st, 0, sizeof(st));
	st.consumer = MemoryContextStrdup(TopMemoryContext, psprintf("txoutbox-worker-%d", my_slot));
	pgstat_report_appname(psprintf("txoutbox worker %d", my_slot));
	round_cxt = AllocSetContextCreate(TopMemoryContext, "txoutbox round",
									  ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		volatile long sleep_ms = 0;

		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(dbname, txoutbox_database) != 0 || my_slot >= txoutbox_workers)
				proc_exit(0);	/* the launcher starts what is wanted now */
		}

		MemoryContextReset(round_cxt);
		MemoryContextSwitchTo(round_cxt);
		PG_TRY();
		{
			if (full_round)
				sleep_ms = dispatcher_iteration(&st);
			else
				dispatcher_collect(&st);
			error_delay_ms = 0;
			if (last_logged_error)
			{
				pfree(last_logged_error);
				last_logged_error = NULL;
			}
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			HOLD_INTERRUPTS();
			MemoryContextSwitchTo(TopMemoryContext);
			edata = CopyErrorData();
			/* log an error once while it keeps repeating */
			if (last_logged_error == NULL || strcmp(last_logged_error, edata->message) != 0)
			{
				EmitErrorReport();
				if (last_logged_error)
					pfree(last_logged_error);
				last_logged_error = pstrdup(edata->message);
			}
			AbortCurrentTransaction();
			FlushErrorState();
			pgstat_report_activity(STATE_IDLE, NULL);
			set_worker_state(WORKER_ERROR_BACKOFF, edata->message);
			FreeErrorData(edata);
			RESUME_INTERRUPTS();

			error_delay_ms = Min(Max(error_delay_ms * 2, 250), ERROR_DELAY_MAX_MS);
			sleep_ms = error_delay_ms;
			/* leases stay ours: webhooks may still be in flight under them */
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);

		if (st.in_flight > 0 && error_delay_ms == 0)
		{
			/*
			 * Webhooks in flight: the next iteration waits for them on the
			 * publisher's sockets (dispatcher_collect) unless a commit set
			 * the latch or the next round is due.
			 */
			full_round = MyLatch->is_set || GetCurrentTimestamp() >= st.next_round;
			continue;
		}
		full_round = true;
		if (sleep_ms > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(sleep_ms, DROP_CHECK_INTERVAL_MS), PG_WAIT_EXTENSION);
	}
}

/* SQL: worker_status(): one row per dispatcher slot in use. */
Datum
txoutbox_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	txoutbox_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
	{
		WorkerSlot	s;
		Datum		values[9];
		bool		nulls[9] = {0};

		LWLockAcquire(txoutbox_shared->lock, LW_SHARED);
		memcpy(&s, &txoutbox_shared->workers[i], sizeof(s));
		LWLockRelease(txoutbox_shared->lock);

		if (s.pid == 0 && i >= txoutbox_workers)
			continue;
		values[0] = Int32GetDatum(i);
		values[1] = Int32GetDatum(s.pid);
		nulls[1] = (s.pid == 0);
		values[2] = CStringGetTextDatum(state_names[s.state]);
		values[3] = TimestampTzGetDatum(s.started_at);
		nulls[3] = (s.started_at == 0);
		values[4] = TimestampTzGetDatum(s.last_round_at);
		nulls[4] = (s.last_round_at == 0);
		values[5] = Int64GetDatum(s.rounds);
		values[6] = Int64GetDatum(s.published);
		values[7] = Int64GetDatum(s.failed);
		values[8] = CStringGetTextDatum(s.last_error);
		nulls[8] = (s.last_error[0] == '\0');
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
