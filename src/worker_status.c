/*-------------------------------------------------------------------------
 *
 * worker_status.c
 *	  worker_status(): what each dispatcher slot in shared memory says,
 *	  with its database.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "shmem.h"
#include "txoutbox.h"

PG_FUNCTION_INFO_V1(txoutbox_worker_status);

static const char *const state_names[] = {
	[WORKER_STOPPED] = "stopped",
	[WORKER_STARTING] = "starting",
	[WORKER_IDLE] = "idle",
	[WORKER_DISPATCHING] = "dispatching",
	[WORKER_WAITING_FOR_EXTENSION] = "waiting for extension",
	[WORKER_RECOVERY] = "recovery",
	[WORKER_ERROR_BACKOFF] = "error backoff",
	[WORKER_NO_SLOT] = "waiting for a worker slot",
};

/*
 * SQL: worker_status(): one row per dispatcher slot in use, of this
 * database, or of every database served for a role with the privileges of
 * pg_read_all_stats (superusers; another database's dispatchers and errors
 * are not every role's to read).  (Before ALTER EXTENSION UPDATE, the
 * function still has 0.1.0's columns, without database: rows are made to
 * its shape.)
 */
Datum
txoutbox_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	int			e,
				i;

	txoutbox_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	for (e = 0; e < txoutbox_shared->ndatabases; e++)
	{
		for (i = 0; i < TXOUTBOX_MAX_WORKERS; i++)
		{
			DatabaseEntry *entry = &txoutbox_shared->databases[e];
			WorkerSlot	s;
			NameData	dbname;
			Oid			dboid;
			bool		in_use;
			Datum		values[10];
			bool		nulls[10] = {0};

			LWLockAcquire(txoutbox_shared->lock, LW_SHARED);
			memcpy(&s, &entry->workers[i], sizeof(s));
			dbname = entry->name;
			dboid = entry->dboid;
			in_use = OidIsValid(entry->dboid) && i < entry->wanted;
			LWLockRelease(txoutbox_shared->lock);

			if ((s.pid == 0 && !in_use) || (!all && dboid != MyDatabaseId))
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
			values[9] = NameGetDatum(&dbname);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
