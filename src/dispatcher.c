/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *	  A dispatcher: a background worker that serves one database, started
 *	  by the launcher into one of the slots of that database's entry in
 *	  shared memory (launcher.c).
 *
 * It loops: a round (dispatch_worker.c), retention, then one wait
 * (netpub_wait) on its latch, the network publishers' sockets and timers,
 * and postmaster death, until a commit wakes it, a network request
 * finishes (its outcome is then recorded at once), a network route that
 * was full has room again, the next delayed or retrying message is due,
 * or txoutbox.poll_interval passes.  It runs a
 * full round at least once a second (every LEAVE_CHECK_MS for a while
 * after ddl_watch.c saw such a command come) to notice a DROP DATABASE,
 * rename or CREATE DATABASE ... TEMPLATE waiting for it, and then exits so
 * the command is not blocked; while it backs off after errors it still
 * looks that often.  It exits too when its database is no longer served or
 * needs fewer dispatchers, and, under txoutbox.database = '*', when the
 * extension is not installed (the launcher starts it again after a CREATE
 * EXTENSION).  Errors are
 * logged (once while they repeat), recorded for worker_status(), and
 * followed by a growing pause; they never end the process.  SIGTERM exits
 * at the next interrupt check, SIGHUP reloads the settings.
 *
 * Taking back leases: when a dispatcher starts, the messages still leased
 * to its slot's consumer were in flight when its previous run exited.
 * Those of network publishers are made claimable at once (at-least-once:
 * they are sent again).  Those of the function publisher are the ones
 * whose user code may have ended the process: they are published one at a
 * time, each in a round of its own between normal rounds, so one that ends
 * the process again uses up only its own attempts (and fails when they run
 * out) while everything else keeps flowing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "dispatch.h"
#include "netpub.h"
#include "outbox.h"
#include "pg_compat.h"
#include "shmem.h"
#include "txoutbox.h"
#include "wakeup.h"
#include "worker.h"

#define DROP_CHECK_INTERVAL_MS	1000
#define LEAVE_CHECK_MS			20	/* while a DROP DATABASE may come */
#define ERROR_DELAY_MAX_MS		30000
#define PURGE_BATCH				1000
#define PURGE_MAX_BATCHES		20
#define PURGE_INTERVAL_MS		10000	/* between passes that finished */
#define PURGE_BACKLOG_MS		100 /* after a pass that did not */

typedef struct DispatcherState
{
	char	   *consumer;
	bool		leases_taken_back;
	int			waiting_logged;	/* what the last "waiting" log said: 0 none, 1 no
								 * extension, 2 another version */
	TimestampTz next_purge;
	TimestampTz next_round;		/* run a full round by then at the latest */
	TimestampTz next_leave_check;	/* look for a DROP DATABASE by then */
	/* messages to publish one at a time (see the file header) */
	pg_uuid_t  *suspects;		/* in TopMemoryContext */
	int			nsuspects;
	int			next_suspect;
} DispatcherState;

static DatabaseEntry *my_entry = NULL;	/* our database's entry */
static WorkerSlot *my_ws = NULL;	/* our slot in it */
static int	my_worker = -1;		/* its number in the entry */
static char my_dbname[NAMEDATALEN];

/* Set this dispatcher's state (and error text, when given) in its slot. */
static void
set_worker_state(WorkerState state, const char *error)
{
	WorkerSlot *slot = my_ws;

	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	slot->state = state;
	if (error)
		strlcpy(slot->last_error, error, TXOUTBOX_ERROR_LEN);
	LWLockRelease(txoutbox_shared->lock);
}

/* Exit because this dispatcher is no longer wanted (not a failure). */
pg_noreturn static void
exit_on_purpose(void)
{
	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	my_ws->stopped_on_purpose = true;
	LWLockRelease(txoutbox_shared->lock);
	proc_exit(0);
}

/* Exit on purpose when our database is no longer served, or needs fewer dispatchers. */
static void
exit_when_unwanted(void)
{
	if (my_entry->dboid != MyDatabaseId || my_worker >= my_entry->wanted ||
		my_worker >= txoutbox_workers)
		exit_on_purpose();		/* the launcher starts what is wanted now */
}

/* How long until the next look for a DROP DATABASE (see the file header). */
static long
leave_check_ms(void)
{
	return my_entry->leave_watch_until > GetCurrentTimestamp() ?
		LEAVE_CHECK_MS : DROP_CHECK_INTERVAL_MS;
}

/* Clear this dispatcher's slot on exit. */
static void
release_slot(int code, Datum arg)
{
	WorkerSlot *slot = my_ws;

	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	slot->latch = NULL;
	slot->pid = 0;
	slot->state = WORKER_STOPPED;
	LWLockRelease(txoutbox_shared->lock);
}

/*
 * Exit when a DROP DATABASE, rename or copy of our database waits for us
 * to leave.  In a transaction, which it commits before leaving.
 */
static void
leave_if_database_busy(DispatcherState *st)
{
	st->next_leave_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), leave_check_ms());
	if (!worker_database_busy(MyDatabaseId))
		return;
	CommitTransactionCommand();
	ereport(LOG,
			(errmsg("txoutbox: database \"%s\" is being dropped, renamed or copied; worker exits",
					my_dbname)));
	exit_on_purpose();
}

/* The same, in a transaction of its own (while backing off after an error). */
static void
leave_check_between_rounds(DispatcherState *st)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	leave_if_database_busy(st);
	CommitTransactionCommand();
}

/*
 * Tell the launcher whether this database has the extension; under
 * txoutbox.database = '*', exit without it (see the file header).
 * generation: extension_generation read before the catalog was: a CREATE
 * EXTENSION that committed since then makes us look again rather than leave.
 */
static void
report_extension(bool installed, uint32 generation)
{
	bool		all = settings_all_databases();
	bool		leave = false;

	if (installed == my_entry->has_extension && (installed || !all))
		return;					/* the launcher knows; nothing to leave for */
	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	if (installed)
		my_entry->has_extension = true;
	else if (!all)
		my_entry->has_extension = false;
	else if (pg_atomic_read_u32(&txoutbox_shared->extension_generation) == generation)
	{
		my_entry->no_extension = true;
		my_entry->has_extension = false;
		leave = true;
	}
	LWLockRelease(txoutbox_shared->lock);
	if (txoutbox_shared->launcher_latch)
		SetLatch(txoutbox_shared->launcher_latch);
	if (leave)
		exit_on_purpose();
}

/*
 * The version of the extension installed in this database, or NULL when it
 * is not installed.  In a transaction.
 */
static char *
installed_version(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("txoutbox"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion, RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * Take back what a previous run of this slot held when it exited (see the
 * file header): network and notify messages claimable at once, function
 * messages kept as suspects for one-at-a-time rounds.
 */
static void
take_back_leases(DispatcherState *st)
{
	MemoryContext cxt = worker_xact_begin("txoutbox: taking back leases");
	RouteSet	routes;
	Datum	   *others;
	int			nothers = 0;
	int			n,
				i;

	routes_load(&routes, cxt);
	n = outbox_leased_by(st->consumer);
	others = palloc(sizeof(Datum) * Max(n, 1));
	if (st->suspects)
		pfree(st->suspects);
	st->suspects = MemoryContextAlloc(TopMemoryContext, sizeof(pg_uuid_t) * Max(n, 1));
	st->nsuspects = 0;
	st->next_suspect = 0;
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		Datum		id = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull);
		char	   *topic = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		Datum		route_id = SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull);
		OutboxRoute *r = routes_for_message(&routes, topic, isnull ? 0 : DatumGetInt64(route_id));

		if (r && !r->broken && r->publisher->kind == PUBLISHER_AFTER_LEASE)
			st->suspects[st->nsuspects++] = *DatumGetUUIDP(id);
		else
			others[nothers++] = datumCopy(id, false, UUID_LEN);
	}
	if (nothers > 0)
	{
		(void) GetCurrentTransactionId();	/* then the clock (low_water.c) */
		outbox_release_leases(PointerGetDatum(construct_array(others, nothers, UUIDOID, UUID_LEN,
															  false, TYPALIGN_CHAR)),
							  st->consumer, GetCurrentTimestamp());
		wakeup_rescan_at_commit();	/* available from now: behind the marks */
	}
	if (n > 0)
		ereport(LOG,
				(errmsg("txoutbox: %s took back %d message(s) claimed before it restarted",
						st->consumer, n),
				 st->nsuspects > 0 ?
				 errdetail("%d of them, of function routes, are published one at a time.",
						   st->nsuspects) : 0));
	worker_xact_commit(cxt);
}

/*
 * After an ERROR: the messages of after-lease publishers that this round
 * leased and was publishing when the error came are nobody's now (their
 * transaction rolled back); publish them one at a time, like those a
 * previous run left (see the file header), instead of waiting out their
 * leases.
 */
static void
take_back_interrupted(DispatcherState *st)
{
	pg_uuid_t  *ids;
	int			n = worker_interrupted_leases(&ids);
	int			left = st->nsuspects - st->next_suspect;
	pg_uuid_t  *all;

	if (n == 0)
		return;
	all = MemoryContextAlloc(TopMemoryContext, sizeof(pg_uuid_t) * (left + n));
	if (left > 0)
		memcpy(all, st->suspects + st->next_suspect, sizeof(pg_uuid_t) * left);
	memcpy(all + left, ids, sizeof(pg_uuid_t) * n);
	if (st->suspects)
		pfree(st->suspects);
	st->suspects = all;
	st->nsuspects = left + n;
	st->next_suspect = 0;
}

/*
 * Retention: purge succeeded messages older than txoutbox.retention, in
 * batches of PURGE_BATCH rows, one short transaction each, at most
 * PURGE_MAX_BATCHES per call.  Returns true when it stopped with more to do.
 */
static bool
purge_old_messages(DispatcherState *st)
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
		if (GetCurrentTimestamp() >= st->next_leave_check)
			leave_check_between_rounds(st);
	}
	return true;
}

/* Options of this dispatcher's rounds. */
static void
dispatcher_options(DispatcherState *st, DispatchOptions *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->consumer = st->consumer;
	opts->max_messages = txoutbox_batch_size;
	opts->retry_delay_ms = -1;
}

/* Add a round's (or a collection's) counts to this dispatcher's slot. */
static void
record_counts(const DispatchCounts *counts, bool round)
{
	WorkerSlot *slot = my_ws;

	if (!round && counts->succeeded == 0 && counts->failed == 0 &&
		counts->last_error[0] == '\0')
		return;					/* nothing to record: no lock taken */
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

/* Record what the network publishers finished since the last time. */
static void
dispatcher_collect(DispatcherState *st)
{
	DispatchOptions opts;
	DispatchCounts counts;

	dispatcher_options(st, &opts);
	worker_collect(&opts, &counts);
	record_counts(&counts, false);
}

/* The next suspect's round (see the file header), if any is left. */
static void
suspect_round(DispatcherState *st)
{
	DispatchOptions opts;
	DispatchCounts counts;
	Datum		id;

	if (st->next_suspect >= st->nsuspects)
		return;
	id = UUIDPGetDatum(&st->suspects[st->next_suspect++]);
	dispatcher_options(st, &opts);
	opts.max_messages = 1;
	opts.only_ids = PointerGetDatum(construct_array(&id, 1, UUIDOID, UUID_LEN, false,
													TYPALIGN_CHAR));
	worker_round(&opts, &counts);
	record_counts(&counts, true);
}

/*
 * One iteration of the dispatcher: checks, a dispatch round, retention.
 * Returns how long it may sleep, in ms.
 */
static long
dispatcher_iteration(DispatcherState *st)
{
	DispatchOptions opts;
	DispatchCounts counts;
	bool		have_extension;
	char	   *version;
	TimestampTz now;
	long		sleep_ms = txoutbox_poll_interval_ms;
	MemoryContext cxt = CurrentMemoryContext;
	uint32		generation;

	if (RecoveryInProgress())
	{
		set_worker_state(WORKER_RECOVERY, NULL);
		return txoutbox_poll_interval_ms;
	}

	generation = pg_atomic_read_u32(&txoutbox_shared->extension_generation);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	leave_if_database_busy(st);
	version = installed_version();
	if (version != NULL)
		version = MemoryContextStrdup(cxt, version);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	have_extension = version != NULL;
	report_extension(have_extension, generation);

	if (have_extension && strcmp(version, TXOUTBOX_VERSION) != 0)
	{
		/* the library is newer than the objects: wait for the update */
		if (st->waiting_logged != 2)
			ereport(LOG,
					(errmsg("txoutbox: extension txoutbox %s is installed in database \"%s\"; this library needs %s; waiting",
							version, my_dbname, TXOUTBOX_VERSION),
					 errhint("Run ALTER EXTENSION txoutbox UPDATE in that database.")));
		st->waiting_logged = 2;
		st->leases_taken_back = false;
		set_worker_state(WORKER_WAITING_FOR_EXTENSION, NULL);
		return Min(txoutbox_poll_interval_ms, leave_check_ms());
	}
	if (!have_extension)
	{
		if (st->waiting_logged != 1)
			ereport(LOG,
					(errmsg("txoutbox: extension txoutbox is not installed in database \"%s\"; waiting",
							my_dbname),
					 errhint("Run CREATE EXTENSION txoutbox in that database.")));
		st->waiting_logged = 1;
		st->leases_taken_back = false;
		set_worker_state(WORKER_WAITING_FOR_EXTENSION, NULL);
		return Min(txoutbox_poll_interval_ms, leave_check_ms());
	}
	st->waiting_logged = 0;

	if (!st->leases_taken_back)
	{
		take_back_leases(st);
		st->leases_taken_back = true;
	}

	set_worker_state(WORKER_DISPATCHING, NULL);
	suspect_round(st);
	dispatcher_options(st, &opts);
	worker_round(&opts, &counts);
	record_counts(&counts, true);

	now = GetCurrentTimestamp();
	if (txoutbox_retention_ms > 0 && now >= st->next_purge)
	{
		bool		more = purge_old_messages(st);

		st->next_purge = TimestampTzPlusMilliseconds(now, more ? PURGE_BACKLOG_MS : PURGE_INTERVAL_MS);
	}

	if (counts.claimed > 0 || st->next_suspect < st->nsuspects)
		sleep_ms = 0;			/* more may be ready now (a full batch, or the
								 * next message of an ordered key) */
	else if (counts.next_due != DT_NOEND)
		sleep_ms = Min(sleep_ms, TimestampDifferenceMilliseconds(now, counts.next_due) + 1);
	/* a full round at least every leave_check_ms() (see header) */
	return Min(sleep_ms, leave_check_ms());
}

/*
 * Claim our slot for this process, or exit when another one has it or the
 * entry is no longer our database's (it was reused while we started).
 */
static void
claim_slot(void)
{
	WorkerSlot *slot = my_ws;

	LWLockAcquire(txoutbox_shared->lock, LW_EXCLUSIVE);
	if (my_entry->dboid != MyDatabaseId || my_worker >= my_entry->wanted)
	{
		/* not ours to touch: exit without a word in it */
		LWLockRelease(txoutbox_shared->lock);
		proc_exit(0);
	}

	/*
	 * One live process per slot: a launcher restarted while its dispatchers
	 * ran may start a second one.  The slot's pid is cleared when its owner
	 * exits (and shared memory is reset after a crash).
	 */
	if (slot->pid != 0 && slot->pid != MyProcPid)
	{
		pid_t		owner = slot->pid;

		LWLockRelease(txoutbox_shared->lock);
		ereport(LOG,
				(errmsg("txoutbox: worker %d of database \"%s\" is already running (pid %d); exiting",
						my_worker, my_dbname, (int) owner)));
		proc_exit(0);
	}
	memset(slot, 0, sizeof(*slot));
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->state = WORKER_STARTING;
	slot->started_at = GetCurrentTimestamp();
	LWLockRelease(txoutbox_shared->lock);
	before_shmem_exit(release_slot, (Datum) 0);
}

/*
 * After an ERROR in an iteration: release what PostgreSQL's own error
 * recovery would (an ERROR may come while no transaction is open, in the
 * network phase), log it once while it repeats, and record it.
 */
static void
recover_from_error(char **last_logged_error)
{
	ErrorData  *edata;

	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(TopMemoryContext);
	edata = CopyErrorData();
	if (*last_logged_error == NULL || strcmp(*last_logged_error, edata->message) != 0)
	{
		EmitErrorReport();
		if (*last_logged_error)
			pfree(*last_logged_error);
		*last_logged_error = pstrdup(edata->message);
	}
	LWLockReleaseAll();
	pgstat_report_wait_end();
	AbortCurrentTransaction();
	FlushErrorState();
	netpub_recover_after_error();
	pgstat_report_activity(STATE_IDLE, NULL);
	set_worker_state(WORKER_ERROR_BACKOFF, edata->message);
	FreeErrorData(edata);
	RESUME_INTERRUPTS();
}

/* Entry point of a dispatcher. */
void
txoutbox_dispatcher_main(Datum main_arg)
{
	DispatcherState st;
	MemoryContext round_cxt;
	Oid			dboid;
	int			e = DatumGetInt32(main_arg) / TXOUTBOX_MAX_WORKERS;
	static char *last_logged_error = NULL;	/* static: kept across longjmp */
	static long error_delay_ms = 0;
	volatile bool run_round = true;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(dboid));
	my_worker = DatumGetInt32(main_arg) % TXOUTBOX_MAX_WORKERS;
	if (e >= txoutbox_shared->ndatabases)
		proc_exit(0);
	my_entry = &txoutbox_shared->databases[e];
	my_ws = &my_entry->workers[my_worker];
	strlcpy(my_dbname, NameStr(my_entry->name), NAMEDATALEN);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* (a database dropped meanwhile: FATAL, and the launcher lets it go) */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	/*
	 * Our queries run with only pg_catalog on the search path, so nothing
	 * planted in public can stand in for an operator or function they use.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	claim_slot();
	memset(&st, 0, sizeof(st));
	st.consumer = MemoryContextStrdup(TopMemoryContext, psprintf("txoutbox-worker-%d", my_worker));
	pgstat_report_appname(psprintf("txoutbox worker %d", my_worker));
	round_cxt = AllocSetContextCreate(TopMemoryContext, "txoutbox round",
									  ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		ResetLatch(MyLatch);

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		exit_when_unwanted();
		/* a DROP DATABASE seen coming (ddl_watch.c) brings the next look nearer */
		st.next_leave_check = Min(st.next_leave_check,
								  TimestampTzPlusMilliseconds(GetCurrentTimestamp(), leave_check_ms()));

		MemoryContextReset(round_cxt);
		MemoryContextSwitchTo(round_cxt);
		PG_TRY();
		{
			long		sleep_ms;
			int			woke;

			/* a cancel raises an ERROR: handled below like any (SIGTERM exits) */
			CHECK_FOR_INTERRUPTS();
			if (run_round)
			{
				sleep_ms = dispatcher_iteration(&st);
				st.next_round = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), sleep_ms);
				error_delay_ms = 0;
				if (last_logged_error)
				{
					pfree(last_logged_error);
					last_logged_error = NULL;
				}
			}
			else
			{
				dispatcher_collect(&st);
				if (GetCurrentTimestamp() >= st.next_leave_check)
					leave_check_between_rounds(&st);
			}

			/*
			 * One wait for everything: the latch (a commit, a signal), the
			 * network publishers' sockets and timers, and the next round's
			 * time.  (Inside the error handler's reach: a transport may
			 * raise while it handles a socket.)
			 */
			sleep_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), st.next_round);
			if (error_delay_ms > 0) /* backing off: still look for a DROP DATABASE */
				sleep_ms = Min(sleep_ms, Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																			 st.next_leave_check), 1));
			woke = sleep_ms > 0 ? netpub_wait(sleep_ms) : NETPUB_WOKE_TIMEOUT;
			run_round = (woke & (NETPUB_WOKE_LATCH | NETPUB_WOKE_TIMEOUT | NETPUB_WOKE_ROOM)) != 0 ||
				GetCurrentTimestamp() >= st.next_round;
			if (error_delay_ms > 0 && GetCurrentTimestamp() < st.next_round)
				run_round = false;	/* backing off: only record outcomes */
		}
		PG_CATCH();
		{
			recover_from_error(&last_logged_error);
			take_back_interrupted(&st);
			error_delay_ms = Min(Max(error_delay_ms * 2, 250), ERROR_DELAY_MAX_MS);
			st.next_round = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), error_delay_ms);
			run_round = false;
			/* leases stay ours: requests may still be in flight under them */
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
	}
}
