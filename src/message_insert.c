/*-------------------------------------------------------------------------
 *
 * message_insert.c
 *	  enqueue()'s row insert without an executor per row.
 *
 * Running the INSERT through SPI starts a whole executor per call, and that
 * start-up (opening the result relation, reading and planning its CHECK
 * constraints, building a projection) costs far more than the insert
 * itself when a statement enqueues many rows.  Here each call only opens
 * the relation and its indexes (already locked, so cheap), checks the
 * constraints, inserts the heap tuple and its index entries, as COPY FROM
 * does, with what earlier calls prepared.  Two lifetimes:
 *
 *	- per backend (InsertCache, in TopMemoryContext): whether the table
 *	  allows the fast path, a slot over a private copy of its descriptor,
 *	  its indexes' OIDs and IndexInfo.  None of it holds a resource or
 *	  changes once built; it is rebuilt when a relcache invalidation hits
 *	  txoutbox.messages or one of its indexes (ALTER TABLE, CREATE INDEX,
 *	  DROP EXTENSION), or when the relation's OID changed.
 *	- per transaction (InsertState, in a context under TopTransactionContext):
 *	  the EState, the ResultRelInfo whose CHECK constraints are prepared in
 *	  the EState's memory, and copies of the IndexInfo whose predicate and
 *	  expression states live there too.  Made by the first call of a
 *	  transaction, freed at commit, forgotten at abort (its memory goes with
 *	  the transaction's), and dropped after a call that an error cut short
 *	  (its constraints may be half prepared) or when the per-backend cache
 *	  is rebuilt, or when a function changed (CREATE OR REPLACE, ALTER
 *	  FUNCTION: the prepared constraints may have inlined it, or folded an
 *	  immutable one to a constant).  So a prepared constraint never
 *	  outlives the transaction that prepared it, nor the definition of a
 *	  function it uses, as an INSERT's, prepared per statement, does not.
 *
 * Idempotency keys: the first row of an enqueue with a key is inserted the
 * way INSERT ... ON CONFLICT DO NOTHING inserts (a speculative insertion
 * with messages_idempotency_idx as the arbiter): look for a conflicting
 * row, waiting for the transactions writing one; none: insert the heap
 * tuple under a speculative token, then the index entries; a conflict that
 * came meanwhile kills the tuple (the other transaction wins) and we look
 * again.  A conflicting row is returned instead of inserting; at
 * REPEATABLE READ and above it must be visible to the transaction's
 * snapshot (or be its own), else the serialization failure of ON CONFLICT
 * (40001) is raised.
 *
 * The fast path is only taken when it does exactly what the INSERT would:
 * a heap table with the expected columns and types, no triggers, no rules,
 * no defaults on the columns we leave null, no generated columns, only
 * btree and hash indexes (other index methods keep state that points into
 * the relcache), no deferrable unique or exclusion constraint (its check
 * is queued for later, which only the INSERT's executor does), and row
 * level security not applying to the function's owner.  Otherwise
 * message_insert() returns false and enqueue() runs the INSERT.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_compat.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "message.h"
#include "message_insert.h"

/* The columns of txoutbox.messages (message.h), as the install script makes them. */
#define COLUMN(name, type, null_by_us) [Anum_messages_##name - 1] = {#name, type, null_by_us}
static const struct
{
	const char *name;
	Oid			type;
	bool		null_by_us;		/* enqueue leaves it null: no default allowed */
}			message_columns[Natts_messages] = {
	COLUMN(id, UUIDOID, false),
	COLUMN(tenant_id, TEXTOID, false),
	COLUMN(org_id, TEXTOID, false),
	COLUMN(topic, TEXTOID, false),
	COLUMN(message_key, TEXTOID, false),
	COLUMN(payload, JSONBOID, false),
	COLUMN(headers, JSONBOID, false),
	COLUMN(correlation_id, TEXTOID, false),
	COLUMN(status, TEXTOID, false),
	COLUMN(attempt_count, INT4OID, false),
	COLUMN(max_attempts, INT4OID, false),
	COLUMN(last_error, TEXTOID, true),
	COLUMN(available_at, TIMESTAMPTZOID, false),
	COLUMN(locked_at, TIMESTAMPTZOID, true),
	COLUMN(locked_by, TEXTOID, true),
	COLUMN(published_at, TIMESTAMPTZOID, true),
	COLUMN(created_at, TIMESTAMPTZOID, false),
	COLUMN(updated_at, TIMESTAMPTZOID, false),
	COLUMN(route_id, INT8OID, false),
	COLUMN(fanout_of, UUIDOID, false),
	COLUMN(idempotency_key, TEXTOID, false),
	COLUMN(expires_at, TIMESTAMPTZOID, false),
};
#undef COLUMN

/* What stays valid until a relcache invalidation (see the file header). */
typedef struct InsertCache
{
	MemoryContext cxt;			/* everything below lives here */
	Oid			relid;
	uint64		generation;		/* relcache_generation when built */
	bool		usable;			/* the table allows the fast path */
	TupleTableSlot *slot;		/* over a private copy of the descriptor */
	int			nindexes;
	Oid		   *index_oids;
	IndexInfo **index_info;		/* never changed by a call (see InsertState) */
	List	   *key_arbiter;	/* messages_idempotency_idx's OID, or NIL */
} InsertCache;

/* What one transaction prepares (see the file header). */
typedef struct InsertState
{
	MemoryContext cxt;			/* under TopTransactionContext */
	uint64		functions_generation;	/* functions_generation when made */
	EState	   *estate;			/* for constraint and predicate evaluation */
	ResultRelInfo *rri;			/* with the prepared CHECK constraints and
								 * copies of the cache's IndexInfo */
} InsertState;

static InsertCache *cache = NULL;	/* in TopMemoryContext */
static InsertState *state = NULL;	/* of the current transaction, or NULL */

/*
 * A call is between building the row and closing the relation, running in
 * subtransaction call_subid.
 */
static bool cache_in_use = false;
static SubTransactionId call_subid = InvalidSubTransactionId;

/*
 * Bumped by any relcache invalidation of the cached relation, of one of its
 * indexes, or of everything.
 */
static uint64 relcache_generation = 1;

/*
 * Bumped by any change of a function (pg_proc): a prepared constraint may
 * have folded or inlined it.
 */
static uint64 functions_generation = 1;
static bool callbacks_registered = false;

static void
messages_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || cache == NULL || relid == cache->relid)
		relcache_generation++;
	else
		for (int i = 0; i < cache->nindexes; i++)
			if (relid == cache->index_oids[i])
				relcache_generation++;
}

static void
functions_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	functions_generation++;
}

/*
 * Free the transaction's state (not while a call uses it).  At an abort
 * its memory goes with the transaction's, and nothing in it is released
 * by hand, as the executor does not either.
 */
static void
drop_state(bool aborting)
{
	if (state == NULL)
		return;
	if (!aborting)
		FreeExecutorState(state->estate);
	MemoryContextDelete(state->cxt);
	state = NULL;
}

static void
insert_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			drop_state(false);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* TopTransactionContext is reset or deleted with it */
			state = NULL;
			cache_in_use = false;
			break;
		default:
			break;
	}
}

/*
 * A call an error cut short in a subtransaction: drop what it prepared.
 * That is an abort of the subtransaction the call runs in or of an outer
 * one; a subtransaction begun during the call (by a function a constraint
 * calls) has a later id, and its abort does not end the call.
 */
static void
insert_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && cache_in_use && mySubid <= call_subid)
	{
		cache_in_use = false;
		drop_state(true);
	}
}

/* Does rel look exactly like the table this file knows how to fill? */
static bool
table_allows_fast_path(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition ||
		rel->rd_rel->relam != HEAP_TABLE_AM_OID || rel->trigdesc != NULL ||
		rel->rd_rules != NULL || desc->natts != Natts_messages ||
		(desc->constr && desc->constr->has_generated_stored))
		return false;
	for (int i = 0; i < Natts_messages; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), message_columns[i].name) != 0 ||
			att->atttypid != message_columns[i].type || att->atttypmod != -1 ||
			(message_columns[i].null_by_us && att->atthasdef))
			return false;
	}
	return true;
}

/*
 * Build the cache for rel in a new context (under the transaction's until
 * it is complete, so that an error half-way leaks nothing).
 */
static InsertCache *
build_cache(Relation rel)
{
	MemoryContext cxt = AllocSetContextCreate(CurTransactionContext, "txoutbox enqueue",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	InsertCache *c = palloc0(sizeof(InsertCache));
	List	   *indexes;
	ListCell   *lc;
	int			i = 0;

	c->cxt = cxt;
	c->relid = RelationGetRelid(rel);
	c->generation = relcache_generation;
	c->usable = table_allows_fast_path(rel);
	if (c->usable)
	{
		c->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
										   &TTSOpsHeapTuple);

		indexes = RelationGetIndexList(rel);
		c->nindexes = list_length(indexes);
		c->index_oids = palloc(sizeof(Oid) * Max(c->nindexes, 1));
		c->index_info = palloc0(sizeof(IndexInfo *) * Max(c->nindexes, 1));
		foreach(lc, indexes)
		{
			Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);

			if (index->rd_rel->relam != BTREE_AM_OID && index->rd_rel->relam != HASH_AM_OID)
				c->usable = false;
			/* a deferred check is queued by the executor's INSERT only */
			if (!index->rd_index->indimmediate)
				c->usable = false;
			c->index_oids[i] = lfirst_oid(lc);
			c->index_info[i] = BuildIndexInfo(index);
			if (strcmp(RelationGetRelationName(index), "messages_idempotency_idx") == 0 &&
				index->rd_index->indisunique && index->rd_index->indimmediate)
			{
				/* what an ON CONFLICT arbiter needs (ExecOpenIndices) */
				BuildSpeculativeIndexInfo(index, c->index_info[i]);
				c->key_arbiter = list_make1_oid(lfirst_oid(lc));
			}
			index_close(index, NoLock);
			i++;
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextSetParent(cxt, TopMemoryContext);
	return c;
}

/*
 * The current transaction's state for the cache c and the open relation
 * rel: made now unless an earlier call of this transaction made it.
 */
static InsertState *
get_state(InsertCache *c, Relation rel)
{
	MemoryContext cxt;
	MemoryContext old;
	InsertState *st;

	if (state != NULL && state->functions_generation == functions_generation)
		return state;
	drop_state(false);			/* a function its constraints use changed */

	cxt = AllocSetContextCreate(TopTransactionContext, "txoutbox enqueue transaction",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	st = palloc0(sizeof(InsertState));
	st->cxt = cxt;
	st->functions_generation = functions_generation;
	st->estate = CreateExecutorState();
	st->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(st->rri, rel, 0, NULL, 0);
	st->rri->ri_RelationDesc = NULL;	/* set by each call */
	st->rri->ri_NumIndices = c->nindexes;
	st->rri->ri_IndexRelationDescs = palloc0(sizeof(Relation) * Max(c->nindexes, 1));
	st->rri->ri_IndexRelationInfo = palloc(sizeof(IndexInfo *) * Max(c->nindexes, 1));
	for (int i = 0; i < c->nindexes; i++)
	{
		/* a copy whose expression states will live in this EState */
		IndexInfo  *ii = palloc(sizeof(IndexInfo));

		memcpy(ii, c->index_info[i], sizeof(IndexInfo));
		ii->ii_ExpressionsState = NIL;
		ii->ii_PredicateState = NULL;
		ii->ii_AmCache = NULL;
		ii->ii_Context = cxt;
		st->rri->ri_IndexRelationInfo[i] = ii;
	}
	MemoryContextSwitchTo(old);
	state = st;
	return st;
}

/*
 * The row an idempotency key conflicted with (at conflict_tid) as a
 * composite datum in the caller's memory context (via cxt, a context of
 * the transaction), checked visible as ON CONFLICT DO NOTHING checks it.
 */
static Datum
existing_row(Relation rel, ItemPointer conflict_tid, MemoryContext caller)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	HeapTuple	tuple;
	bool		should_free;
	Datum		row;
	MemoryContext old;

	if (!table_tuple_fetch_row_version(rel, conflict_tid, SnapshotAny, slot))
		elog(ERROR, "txoutbox: the message an idempotency key conflicted with is gone");
	if (IsolationUsesXactSnapshot() &&
		!table_tuple_satisfies_snapshot(rel, slot, GetActiveSnapshot()))
	{
		bool		isnull;
		TransactionId xmin = DatumGetTransactionId(slot_getsysattr(slot, MinTransactionIdAttributeNumber,
																   &isnull));

		if (!TransactionIdIsCurrentTransactionId(xmin))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update"),
					 errdetail("A message with this idempotency key was enqueued by a transaction this one cannot see.")));
	}
	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
	old = MemoryContextSwitchTo(caller);
	row = heap_copy_tuple_as_datum(tuple, RelationGetDescr(rel));
	MemoryContextSwitchTo(old);
	if (should_free)
		heap_freetuple(tuple);
	ExecDropSingleTupleTableSlot(slot);
	return row;
}

/*
 * Insert the message row (values/isnull in the table's column order) and
 * set *result to it as a composite datum, in the caller's memory context.
 * With check_key (the row has an idempotency key and is the first of its
 * message), a message already holding the key is not inserted: *result is
 * that message's row, and MESSAGE_INSERT_EXISTS is returned (see the file
 * header).  Returns MESSAGE_INSERT_NOT_FAST, having done nothing, when the
 * fast path does not apply.
 */
MessageInsertResult
message_insert(Datum *values, bool *isnull, bool check_key, Datum *result)
{
	MemoryContext caller = CurrentMemoryContext;
	InsertCache *c;
	InsertState *st;
	Oid			relid;
	Relation	rel;
	HeapTuple	tuple;
	TupleTableSlot *slot;
	MessageInsertResult outcome = MESSAGE_INSERTED;

	if (cache_in_use)
		return MESSAGE_INSERT_NOT_FAST; /* called from within a call (say, a CHECK) */
	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(messages_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PROCOID, functions_syscache_callback, (Datum) 0);
		RegisterXactCallback(insert_xact_callback, NULL);
		RegisterSubXactCallback(insert_subxact_callback, NULL);
		callbacks_registered = true;
	}

	/* as the INSERT would: the lock, then the checks */
	relid = RangeVarGetRelid(makeRangeVar("txoutbox", "messages", -1),
							 RowExclusiveLock, false);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK ||
		check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		return MESSAGE_INSERT_NOT_FAST; /* the INSERT reports or applies them */
	PreventCommandIfReadOnly("INSERT");

	rel = table_open(relid, NoLock);
	if (cache == NULL || cache->relid != relid || cache->generation != relcache_generation)
	{
		drop_state(false);		/* it points into the old cache */
		if (cache != NULL)
			MemoryContextDelete(cache->cxt);
		cache = NULL;
		cache = build_cache(rel);
	}
	c = cache;
	if (!c->usable || (check_key && c->key_arbiter == NIL))
	{
		table_close(rel, NoLock);
		return MESSAGE_INSERT_NOT_FAST;
	}
	st = get_state(c, rel);

	cache_in_use = true;
	call_subid = GetCurrentSubTransactionId();
	st->rri->ri_RelationDesc = rel;
	for (int i = 0; i < c->nindexes; i++)
		st->rri->ri_IndexRelationDescs[i] = index_open(c->index_oids[i], RowExclusiveLock);

	tuple = heap_form_tuple(RelationGetDescr(rel), values, isnull);
	slot = c->slot;
	ExecStoreHeapTuple(tuple, slot, false);

	if (rel->rd_att->constr)
		ExecConstraints(st->rri, slot, st->estate);
	if (!check_key)
	{
		table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
		if (c->nindexes > 0)
		{
			/* checks to queue for later: none, with no deferrable index */
			List	   *recheck = compat_insert_index_tuples(st->rri, slot, st->estate);

			if (recheck != NIL)
				elog(ERROR, "txoutbox: enqueue's insert has deferred constraint checks to queue");
		}
	}
	else
	{
		/* INSERT ... ON CONFLICT DO NOTHING's protocol (see the file header) */
		for (;;)
		{
			ItemPointerData conflict_tid;
			uint32		token;
			bool		conflict = false;
			List	   *recheck;

			if (!compat_check_index_constraints(st->rri, slot, st->estate, &conflict_tid,
												c->key_arbiter))
			{
				*result = existing_row(rel, &conflict_tid, caller);
				outcome = MESSAGE_INSERT_EXISTS;
				break;
			}
			token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
			table_tuple_insert_speculative(rel, slot, GetCurrentCommandId(true), 0, NULL, token);
			recheck = compat_insert_index_tuples_speculative(st->rri, slot, st->estate,
															  &conflict, c->key_arbiter);
			table_tuple_complete_speculative(rel, slot, token, !conflict);
			SpeculativeInsertionLockRelease(GetCurrentTransactionId());
			if (!conflict)
			{
				if (recheck != NIL)
					elog(ERROR, "txoutbox: enqueue's insert has deferred constraint checks to queue");
				break;
			}
			list_free(recheck);
			/* another transaction's row came first: look again */
			ResetPerTupleExprContext(st->estate);
		}
	}

	ExecClearTuple(slot);
	ResetPerTupleExprContext(st->estate);
	for (int i = 0; i < c->nindexes; i++)
	{
		index_close(st->rri->ri_IndexRelationDescs[i], NoLock);
		st->rri->ri_IndexRelationDescs[i] = NULL;
	}
	st->rri->ri_RelationDesc = NULL;
	cache_in_use = false;

	if (outcome == MESSAGE_INSERTED)
		*result = heap_copy_tuple_as_datum(tuple, RelationGetDescr(rel));
	table_close(rel, NoLock);
	return outcome;
}
