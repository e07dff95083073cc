/*-------------------------------------------------------------------------
 *
 * message_insert.c
 *	  enqueue()'s row insert without an executor per row.
 *
 * Running the INSERT through SPI starts a whole executor per call, and that
 * start-up (opening the result relation, reading and planning its CHECK
 * constraints, building a projection) costs far more than the insert
 * itself when a statement enqueues many rows.  Here we keep what does not
 * change between calls, the prepared CHECK constraints and the indexes'
 * IndexInfo, in a per-backend cache, and each call only opens the relation
 * and its indexes (already locked, so cheap), checks the constraints,
 * inserts the heap tuple and its index entries, as COPY FROM does.
 *
 * Nothing kept across calls holds a resource: relations are opened and
 * closed in each call, the slot's tuple descriptor is a private copy.  The
 * cache is rebuilt when a relcache invalidation hits txoutbox.messages or
 * one of its indexes (ALTER TABLE, CREATE INDEX, DROP EXTENSION), when the
 * relation's OID changed, and after a call that was cut short by an error
 * (it may have left the constraints half prepared).
 *
 * The fast path is only taken when it does exactly what the INSERT would:
 * a heap table with the expected columns and types, no triggers, no rules,
 * no defaults on the columns we leave null, no generated columns, only
 * btree and hash indexes (other index methods keep state that points into
 * the relcache), and row level security not applying to the function's
 * owner.  Otherwise message_insert() returns false and enqueue() runs the
 * INSERT.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_compat.h"

#include "access/genam.h"
#include "access/htup_details.h"
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
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"

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
};
#undef COLUMN

typedef struct InsertCache
{
	MemoryContext cxt;			/* everything below lives here */
	Oid			relid;
	uint64		generation;		/* relcache_generation when built */
	bool		usable;			/* the table allows the fast path */
	EState	   *estate;			/* for constraint and predicate evaluation */
	ResultRelInfo *rri;			/* with the prepared CHECK constraints */
	TupleTableSlot *slot;		/* over a private copy of the descriptor */
	int			nindexes;
	Oid		   *index_oids;
} InsertCache;

static InsertCache *cache = NULL;	/* in TopMemoryContext */

/* A call is between building the row and closing the relation. */
static bool cache_in_use = false;

/*
 * Bumped by any relcache invalidation of the cached relation, of one of its
 * indexes, or of everything.
 */
static uint64 relcache_generation = 1;
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

/* A call cut short by an error: rebuild the cache before the next one. */
static void
forget_interrupted_call(void)
{
	if (cache_in_use)
	{
		cache_in_use = false;
		relcache_generation++;
	}
}

static void
insert_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		forget_interrupted_call();
}

static void
insert_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_interrupted_call();
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
		c->estate = CreateExecutorState();
		c->rri = makeNode(ResultRelInfo);
		InitResultRelInfo(c->rri, rel, 0, NULL, 0);
		c->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
										   &TTSOpsHeapTuple);

		indexes = RelationGetIndexList(rel);
		c->nindexes = list_length(indexes);
		c->index_oids = palloc(sizeof(Oid) * Max(c->nindexes, 1));
		c->rri->ri_NumIndices = c->nindexes;
		c->rri->ri_IndexRelationDescs = palloc0(sizeof(Relation) * Max(c->nindexes, 1));
		c->rri->ri_IndexRelationInfo = palloc0(sizeof(IndexInfo *) * Max(c->nindexes, 1));
		foreach(lc, indexes)
		{
			Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);

			if (index->rd_rel->relam != BTREE_AM_OID && index->rd_rel->relam != HASH_AM_OID)
				c->usable = false;
			c->index_oids[i] = lfirst_oid(lc);
			c->rri->ri_IndexRelationInfo[i] = BuildIndexInfo(index);
			index_close(index, NoLock);
			i++;
		}
	}
	MemoryContextSwitchTo(old);
	MemoryContextSetParent(cxt, TopMemoryContext);
	return c;
}

/*
 * Insert the message row (values/isnull in the table's column order) and
 * set *result to it as a composite datum, in the caller's memory context.
 * Returns false, having done nothing, when the fast path does not apply.
 */
bool
message_insert(Datum *values, bool *isnull, Datum *result)
{
	InsertCache *c;
	Oid			relid;
	Relation	rel;
	HeapTuple	tuple;
	TupleTableSlot *slot;

	if (cache_in_use)
		return false;			/* called from within a call (say, a CHECK) */
	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(messages_relcache_callback, (Datum) 0);
		RegisterXactCallback(insert_xact_callback, NULL);
		RegisterSubXactCallback(insert_subxact_callback, NULL);
		callbacks_registered = true;
	}

	/* as the INSERT would: the lock, then the checks */
	relid = RangeVarGetRelid(makeRangeVar("txoutbox", "messages", -1),
							 RowExclusiveLock, false);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK ||
		check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		return false;			/* the INSERT reports or applies them */
	PreventCommandIfReadOnly("INSERT");

	rel = table_open(relid, NoLock);
	if (cache == NULL || cache->relid != relid || cache->generation != relcache_generation)
	{
		if (cache != NULL)
			MemoryContextDelete(cache->cxt);
		cache = NULL;
		cache = build_cache(rel);
	}
	c = cache;
	if (!c->usable)
	{
		table_close(rel, NoLock);
		return false;
	}

	cache_in_use = true;
	c->rri->ri_RelationDesc = rel;
	for (int i = 0; i < c->nindexes; i++)
		c->rri->ri_IndexRelationDescs[i] = index_open(c->index_oids[i], RowExclusiveLock);

	tuple = heap_form_tuple(RelationGetDescr(rel), values, isnull);
	slot = c->slot;
	ExecStoreHeapTuple(tuple, slot, false);

	if (rel->rd_att->constr)
		ExecConstraints(c->rri, slot, c->estate);
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	if (c->nindexes > 0)
		list_free(compat_insert_index_tuples(c->rri, slot, c->estate));

	ExecClearTuple(slot);
	ResetPerTupleExprContext(c->estate);
	for (int i = 0; i < c->nindexes; i++)
	{
		index_close(c->rri->ri_IndexRelationDescs[i], NoLock);
		c->rri->ri_IndexRelationDescs[i] = NULL;
	}
	c->rri->ri_RelationDesc = NULL;
	cache_in_use = false;

	*result = heap_copy_tuple_as_datum(tuple, RelationGetDescr(rel));
	table_close(rel, NoLock);
	return true;
}
