/*-------------------------------------------------------------------------
 *
 * ddl_watch.c
 *	  A ProcessUtility hook that tells the workers of the commands that
 *	  concern them, so that they need not poll for them often.
 *
 * A CREATE EXTENSION that installed txoutbox (itself, or through CASCADE)
 * bumps extension_generation when it commits and wakes the launcher, which
 * then looks again at the databases where txoutbox was not installed (under
 * txoutbox.database = '*'; a CREATE EXTENSION in a prepared transaction is
 * found at the launcher's next look, within 10 minutes).  DROP DATABASE,
 * ALTER DATABASE ... RENAME and CREATE DATABASE ... TEMPLATE of a served
 * database, run by its owner or a superuser, wake its dispatchers and have
 * them look every few milliseconds while the command runs: each of these
 * commands waits for the database's other sessions to leave, and a
 * dispatcher leaves as soon as it sees the command's lock (dispatcher.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#include "ddl_watch.h"
#include "pg_compat.h"
#include "shmem.h"

#define LEAVE_WATCH_MS		10000	/* the longest the dispatchers look often */

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

/*
 * The dispatchers of database dbname (if served, and if the current user
 * owns it: nobody else's command can take its lock) look often until
 * unwatch_database() or LEAVE_WATCH_MS.  Returns the database's entry, or
 * NULL.
 */
static DatabaseEntry *
watch_database(const char *dbname)
{
	Oid			dboid;
	DatabaseEntry *entry;
	int			i;

	if (dbname == NULL || txoutbox_shared == NULL)
		return NULL;
	dboid = get_database_oid(dbname, true);
	entry = shmem_database_entry(dboid);
	if (entry == NULL || !compat_database_ownercheck(dboid, GetUserId()))
		return NULL;
	entry->leave_watch_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LEAVE_WATCH_MS);
	for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
	{
		Latch	   *latch = entry->workers[i].latch;

		if (latch != NULL)
			SetLatch(latch);
	}
	return entry;
}

/* The command that watched entry's database ended: back to looking once a second. */
static void
unwatch_database(DatabaseEntry *entry, Oid dboid)
{
	if (entry != NULL && entry->dboid == dboid)
		entry->leave_watch_until = 0;
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
run_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			ProcessUtilityContext context, ParamListInfo params,
			QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

static void
ddl_watch_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						  ProcessUtilityContext context, ParamListInfo params,
						  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	DatabaseEntry *volatile watched = NULL;
	Oid			watched_oid = InvalidOid;

	switch (nodeTag(stmt))
	{
		case T_CreateExtensionStmt:
			{
				bool		had = OidIsValid(get_extension_oid("txoutbox", true));

				run_utility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
				if (!had && OidIsValid(get_extension_oid("txoutbox", true)))
				{
					if (!callback_registered)
					{
						RegisterXactCallback(ddl_watch_xact_callback, NULL);
						callback_registered = true;
					}
					extension_pending = true;
				}
				return;
			}
		case T_DropdbStmt:
			watched = watch_database(((DropdbStmt *) stmt)->dbname);
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				watched = watch_database(((RenameStmt *) stmt)->subname);
			break;
		case T_CreatedbStmt:
			watched = watch_database(createdb_template((CreatedbStmt *) stmt));
			break;
		default:
			break;
	}

	if (watched == NULL)
	{
		run_utility(pstmt, queryString, readOnlyTree, context, params,
					queryEnv, dest, qc);
		return;
	}
	watched_oid = watched->dboid;
	PG_TRY();
	{
		run_utility(pstmt, queryString, readOnlyTree, context, params,
					queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		unwatch_database(watched, watched_oid);
	}
	PG_END_TRY();
}

/* Chain the hook; called from _PG_init under shared_preload_libraries. */
void
ddl_watch_install(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = ddl_watch_process_utility;
}
