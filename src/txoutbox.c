/*-------------------------------------------------------------------------
 *
 * txoutbox.c
 *	  Module entry point: settings (GUCs), shared memory, and the
 *	  wake-on-commit transaction callback.
 *
 * Shared memory holds one slot per dispatcher (its pid, its latch, and the
 * counters shown by worker_status()), guarded by one LWLock.  Latch pointers
 * are read without the lock: setting the latch of a process that has just
 * exited is harmless.
 *
 * Wake-up: enqueue() and replay() set a backend-local flag.  The transaction
 * callback is registered once per backend (the first time the flag is set),
 * and on commit sets every dispatcher's latch; on abort it only clears the
 * flag, so a rollback wakes nobody.  A latch set while a dispatcher is busy
 * stays set, so no wake-up is lost.  A commit that made a message claimable
 * earlier than the time it was written (a replay, a past available_at) also
 * bumps rescan_generation, so that the dispatchers look behind their
 * low-water mark (dispatch.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "txoutbox.h"

PG_MODULE_MAGIC;

char	   *txoutbox_database = NULL;
int			txoutbox_workers = 1;
int			txoutbox_batch_size = 500;
int			txoutbox_poll_interval_ms = 1000;
int			txoutbox_lock_timeout_ms = 60000;
int			txoutbox_max_attempts = 10;
int			txoutbox_retry_base_delay_ms = 1000;
int			txoutbox_retry_max_delay_ms = 600000;
int			txoutbox_retention_ms = 7 * 24 * 3600 * 1000;
int			txoutbox_http_max_concurrency = 32;
int			txoutbox_http_timeout_ms = 5000;
char	   *txoutbox_http_allowed_hosts = NULL;
char	   *txoutbox_tenant_id = NULL;

TxoutboxShared *txoutbox_shared = NULL;
bool		txoutbox_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static bool wake_pending = false;
static bool rescan_pending = false;
static bool xact_callback_registered = false;

void		_PG_init(void);
static void txoutbox_shmem_request(void);
static void txoutbox_shmem_startup(void);
static void txoutbox_xact_callback(XactEvent event, void *arg);
static void define_settings(void);

/*
 * Module load: define the settings everywhere; reserve shared memory and
 * register the launcher only when loaded by shared_preload_libraries.
 */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	define_settings();

	if (!process_shared_preload_libraries_in_progress)
		return;

	txoutbox_preloaded = true;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = txoutbox_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = txoutbox_shmem_startup;

	txoutbox_register_launcher();
}

/* The GUCs of SPEC.md, each with the context its use calls for. */
static void
define_settings(void)
{
	DefineCustomStringVariable("txoutbox.database",
							   "Database whose outbox the background workers serve.",
							   NULL, &txoutbox_database, "postgres",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.workers",
							"Number of dispatcher background workers (0 disables the worker).",
							NULL, &txoutbox_workers, 1, 0, TXOUTBOX_MAX_WORKERS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.batch_size",
							"Messages a dispatcher claims per round.",
							NULL, &txoutbox_batch_size, 500, 1, TXOUTBOX_MAX_CLAIM,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.poll_interval",
							"Longest a dispatcher sleeps without being woken by a commit.",
							NULL, &txoutbox_poll_interval_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.lock_timeout",
							"Lease of a claim: how long a claimed message stays with its consumer.",
							NULL, &txoutbox_lock_timeout_ms, 60000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.max_attempts",
							"Default number of attempts before a message is failed.",
							NULL, &txoutbox_max_attempts, 10, 1, 1000000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.retry_base_delay",
							"Delay before the first retry; doubled on each further attempt.",
							NULL, &txoutbox_retry_base_delay_ms, 1000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.retry_max_delay",
							"Longest delay between two attempts.",
							NULL, &txoutbox_retry_max_delay_ms, 600000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.retention",
							"Succeeded messages older than this are purged by the worker; 0 keeps them.",
							NULL, &txoutbox_retention_ms, 7 * 24 * 3600 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.http_max_concurrency",
							"Most webhook requests a dispatcher has in flight at once.",
							NULL, &txoutbox_http_max_concurrency, 32, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.http_timeout",
							"Default timeout of a webhook request.",
							NULL, &txoutbox_http_timeout_ms, 5000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("txoutbox.http_allowed_hosts",
							   "Comma-separated host names webhook routes may point to; empty allows any.",
							   NULL, &txoutbox_http_allowed_hosts, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("txoutbox.tenant_id",
							   "Tenant the session is bound to: its txoutbox calls see and act on that tenant's messages only.",
							   "Set per role by an administrator (ALTER ROLE ... SET txoutbox.tenant_id); only superusers, or roles granted SET on it, can change it.",
							   &txoutbox_tenant_id, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);

	MarkGUCPrefixReserved("txoutbox");
}

/* Ask for the shared memory of the worker slots. */
static void
txoutbox_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(MAXALIGN(sizeof(TxoutboxShared)));
	RequestNamedLWLockTranche("txoutbox", 1);
}

/* Attach to (and on first use initialise) the shared worker slots. */
static void
txoutbox_shmem_startup(void)
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
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Refuse SQL use of the C functions when the library was not preloaded: the
 * dispatcher would never run and wake-ups would go nowhere.
 */
void
txoutbox_require_preload(void)
{
	if (!txoutbox_preloaded || txoutbox_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("txoutbox must be loaded via shared_preload_libraries"),
				 errhint("Add txoutbox to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* The tenant this session is bound to (txoutbox.tenant_id), or NULL. */
const char *
txoutbox_bound_tenant(void)
{
	if (txoutbox_tenant_id == NULL || txoutbox_tenant_id[0] == '\0')
		return NULL;
	return txoutbox_tenant_id;
}

/* Ask for the dispatchers to be woken when the current transaction commits. */
void
txoutbox_wake_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(txoutbox_xact_callback, NULL);
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
txoutbox_rescan_at_commit(void)
{
	txoutbox_wake_at_commit();
	rescan_pending = true;
}

/* Set the latch of every running dispatcher. */
void
txoutbox_wake_workers(void)
{
	int			i;

	if (txoutbox_shared == NULL)
		return;
	for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
	{
		Latch	   *latch = txoutbox_shared->workers[i].latch;

		if (latch != NULL)
			SetLatch(latch);
	}
}

/* Commit with a pending wake-up: wake the dispatchers.  Abort: forget it. */
static void
txoutbox_xact_callback(XactEvent event, void *arg)
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
			txoutbox_wake_workers();
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
