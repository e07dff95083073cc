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
 * IndexInfo, in the calling expression's FmgrInfo (fn_extra), and each call
 * only opens the relation and its indexes (already locked, so cheap),
 * checks the constraints, inserts the heap tuple and its index entries, as
 * COPY FROM does.
 *
 * Nothing kept across calls holds a resource: relations are opened and
 * closed in each call, the slot's tuple descriptor is a private copy.  The
 * cache is rebuilt when a relcache invalidation hits txoutbox.messages
 * (ALTER TABLE, CREATE INDEX, DROP EXTENSION) or the relation's OID changed.
 *
 * The fast path is only taken when it does exactly what the INSERT would:
 * no triggers on the table, row level security not applying to the
 * function's owner, no generated columns and the expected column layout.
 * Otherwise message_insert() returns false and enqueue() runs the INSERT.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"

#include "txoutbox.h"

/* The columns of txoutbox.messages, in order (the SQL script's table). */
static const char *const message_columns[MESSAGE_NATTS] = {
	"id", "tenant_id", "org_id", "topic", "message_key", "payload", "headers",
	"correlation_id", "status", "attempt_count", "max_attempts", "last_error",
	"available_at", "locked_at", "locked_by", "published_at", "created_at",
	"updated_at"
};

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

/* Bumped by any relcache invalidation of the cached relation (or of all). */
static uint64 relcache_generation = 1;
static Oid	watched_relid = InvalidOid;
static bool callback_registered = false;

static void
messages_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == watched_relid)
		relcache_generation++;
}

/* Does rel look exactly like the table this file knows how to fill? */
static bool
table_allows_fast_path(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition ||
		rel->trigdesc != NULL || desc->natts != MESSAGE_NATTS ||
		(desc->constr && desc->constr->has_generated_stored))
		return false;
	for (int i = 0; i < MESSAGE_NATTS; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), message_columns[i]) != 0)
			return false;
	}
	return true;
}

/* Build the cache for rel in a new context under parent. */
static InsertCache *
build_cache(Relation rel, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "txoutbox enqueue",
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

			c->index_oids[i] = lfirst_oid(lc);
			c->rri->ri_IndexRelationInfo[i] = BuildIndexInfo(index);
			index_close(index, NoLock);
			i++;
		}
	}
	MemoryContextSwitchTo(old);
	return c;
}

/*
 * Insert the message row (values/isnull in the table's column order) and
 * set *result to it as a composite datum, in the caller's memory context.
 * Returns false, having done nothing, when the fast path does not apply.
 * flinfo keeps the cache between calls of one expression.
 */
bool
message_insert(FmgrInfo *flinfo, Datum *values, bool *isnull, Datum *result)
{
	InsertCache *c = (InsertCache *) flinfo->fn_extra;
	Oid			relid;
	Relation	rel;
	HeapTuple	tuple;
	TupleTableSlot *slot;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(messages_relcache_callback, (Datum) 0);
		callback_registered = true;
	}

	/* as the INSERT would: the lock, then the checks */
	relid = RangeVarGetRelid(makeRangeVar("txoutbox", "messages", -1),
							 RowExclusiveLock, false);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK ||
		check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		return false;			/* the INSERT reports or applies them */
	PreventCommandIfReadOnly("INSERT");

	rel = table_open(relid, NoLock);
	watched_relid = relid;
	if (c == NULL || c->relid != relid || c->generation != relcache_generation)
	{
		if (c != NULL)
			MemoryContextDelete(c->cxt);
		flinfo->fn_extra = NULL;
		c = build_cache(rel, flinfo->fn_mcxt);
		flinfo->fn_extra = c;
	}
	if (!c->usable)
	{
		table_close(rel, NoLock);
		return false;
	}

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
		list_free(ExecInsertIndexTuples(c->rri, slot, c->estate, false, false, NULL, NIL));

	ExecClearTuple(slot);
	ResetPerTupleExprContext(c->estate);
	for (int i = 0; i < c->nindexes; i++)
	{
		index_close(c->rri->ri_IndexRelationDescs[i], NoLock);
		c->rri->ri_IndexRelationDescs[i] = NULL;
	}
	c->rri->ri_RelationDesc = NULL;

	*result = heap_copy_tuple_as_datum(tuple, RelationGetDescr(rel));
	table_close(rel, NoLock);
	return true;
}
