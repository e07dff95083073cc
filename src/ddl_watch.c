/*-------------------------------------------------------------------------
 *
 * ddl_watch.c
 *	  A ProcessUtility hook that tells the workers of the commands that
 *	  concern them, so that they need not poll for them often.
 *
 * CREATE EXTENSION (of any extension: CASCADE may install txoutbox) and
 * COMMIT PREPARED bump extension_generation when they commit and wake the
 * launcher, which then looks again at the databases where txoutbox was not
 * installed (under txoutbox.database = '*').  DROP DATABASE, ALTER DATABASE
 * ... RENAME and CREATE DATABASE ... TEMPLATE of a served database wake its
 * dispatchers and have them look every few milliseconds for a while: each
 * of these commands waits for the database's other sessions to leave, and
 * a dispatcher leaves as soon as it sees the command's lock (dispatcher.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/timestamp.h"

#include "ddl_watch.h"
#include "shmem.h"

#define LEAVE_WATCH_MS		10000	/* how long the dispatchers look often */

static ProcessUtility_hook_type prev_process_utility = NULL;
static bool extension_pending = false;
static bool callback_registered = false;

/* Tell the launcher that an extension may have been installed somewhere. */
static void
announce_extension(void)
{
	Latch	   *latch;

	if (txoutbox_shared == NULL)
		return;
	pg_atomic_fetch_add_u32(&txoutbox_shared->extension_generation, 1);
	latch = txoutbox_shared->launcher_latch;
	if (latch != NULL)
		SetLatch(latch);
}

/* At commit of a CREATE EXTENSION: announce it.  At abort: forget it. */
static void
ddl_watch_xact_callback(XactEvent event, void *arg)
{
	if (!extension_pending)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		announce_extension();
	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PARALLEL_PRE_COMMIT &&
		event != XACT_EVENT_PRE_PREPARE)
		extension_pending = false;
}

/* The dispatchers of database dbname (if served) look often for a while. */
static void
watch_database(const char *dbname)
{
	Oid			dboid;
	DatabaseEntry *entry;
	int			i;

	if (dbname == NULL || txoutbox_shared == NULL)
		return;
	dboid = get_database_oid(dbname, true);
	entry = shmem_database_entry(dboid);
	if (entry == NULL)
		return;
	entry->leave_watch_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LEAVE_WATCH_MS);
	for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
	{
		Latch	   *latch = entry->workers[i].latch;

		if (latch != NULL)
			SetLatch(latch);
	}
}

/* The template of a CREATE DATABASE, or NULL. */
static const char *
createdb_template(CreatedbStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
			return defGetString(opt);
	}
	return NULL;
}

static void
ddl_watch_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						  ProcessUtilityContext context, ParamListInfo params,
						  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	bool		commit_prepared = false;

	switch (nodeTag(stmt))
	{
		case T_CreateExtensionStmt:
			if (!callback_registered)
			{
				RegisterXactCallback(ddl_watch_xact_callback, NULL);
				callback_registered = true;
			}
			extension_pending = true;
			break;
		case T_TransactionStmt:
			commit_prepared = ((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED;
			break;
		case T_DropdbStmt:
			watch_database(((DropdbStmt *) stmt)->dbname);
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				watch_database(((RenameStmt *) stmt)->subname);
			break;
		case T_CreatedbStmt:
			watch_database(createdb_template((CreatedbStmt *) stmt));
			break;
		default:
			break;
	}

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	/* a prepared CREATE EXTENSION commits here, past our callback's reach */
	if (commit_prepared)
		announce_extension();
}

/* Chain the hook; called from _PG_init under shared_preload_libraries. */
void
ddl_watch_install(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = ddl_watch_process_utility;
}
