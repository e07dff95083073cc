/*-------------------------------------------------------------------------
 *
 * fanout.c
 *	  enqueue()'s fan-out: a topic that an enabled fan-out route matches
 *	  ("fanout": true: a subscription) is enqueued as one row per
 *	  destination, each fan-out route that matches getting a copy bound to
 *	  it (route_id), plus one for the topic's ordinary route when one
 *	  matches; outbox.c makes the rows.  This file says which destinations
 *	  a topic has, from a cache of the enabled routes kept per backend, and
 *	  holds the trigger that invalidates it.
 *
 * enqueue is the hot path: with no fan-out route enabled, what it costs
 * here is a test of two backend-local variables.  The cache (every
 * enabled route's id, pattern and whether it fans out) is read from
 * txoutbox.routes with a fresh snapshot the first time a backend needs it,
 * and again after it was invalidated.  Every statement that writes
 * txoutbox.routes fires the statement trigger routes_changed, which
 * queues a relcache invalidation of txoutbox.routes: like a catalog
 * change's, it is applied at once in the writing transaction (at its next
 * command, and at its abort or a subtransaction's, which undo it), and in
 * every other backend at its next transaction start or lock after the
 * commit.  The commit is visible to new snapshots before its invalidation
 * is sent, and the cache is read with a snapshot taken after the
 * invalidations were accepted, so a cache that misses a committed change
 * is always invalidated afterwards.  Each call accepts the invalidations
 * that came (when none did, that is the test of a flag), so an enqueue
 * sees every route change committed before it, whatever its isolation
 * level (like a catalog change), and its own transaction's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "fanout.h"
#include "routes.h"

PG_FUNCTION_INFO_V1(txoutbox_routes_changed);

/* txoutbox.routes's columns that the cache reads (the install scripts') */
#define Anum_routes_id				1
#define Anum_routes_topic_pattern	2
#define Anum_routes_config			4
#define Anum_routes_enabled			5

typedef struct CachedRoute
{
	int64		id;
	char	   *pattern;
	int			plen;
	bool		fanout;
} CachedRoute;

/* The enabled routes, in id order, in cxt (under TopMemoryContext). */
static struct
{
	bool		valid;
	Oid			relid;			/* of txoutbox.routes when read */
	MemoryContext cxt;
	int			n;
	int			nfanout;
	CachedRoute *routes;
} cache;

static bool callback_registered = false;

/* A relcache invalidation of txoutbox.routes (or of everything). */
static void
routes_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cache.relid)
		cache.valid = false;
}

static int
route_id_cmp(const void *a, const void *b)
{
	int64		x = ((const CachedRoute *) a)->id;
	int64		y = ((const CachedRoute *) b)->id;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* Read the enabled routes into the cache (see the file header). */
static void
cache_build(void)
{
	Oid			relid = get_relname_relid("routes", get_namespace_oid("txoutbox", false));
	Relation	rel;
	Snapshot	snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext old;
	int			cap = 16;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table txoutbox.routes does not exist")));
	if (cache.cxt == NULL)
		cache.cxt = AllocSetContextCreate(TopMemoryContext, "txoutbox fan-out routes",
										  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(cache.cxt);
	cache.n = 0;
	cache.nfanout = 0;
	cache.routes = MemoryContextAlloc(cache.cxt, sizeof(CachedRoute) * cap);

	/*
	 * The lock accepts the invalidations pending; the snapshot, taken
	 * after, sees what they announced.  A later one invalidates the cache
	 * again (none is accepted while it is read).
	 */
	cache.relid = relid;
	rel = table_open(relid, AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;
		CachedRoute *r;
		text	   *pattern;

		d = slot_getattr(slot, Anum_routes_enabled, &isnull);
		if (isnull || !DatumGetBool(d))
			continue;
		if (cache.n == cap)
		{
			cap *= 2;
			cache.routes = repalloc(cache.routes, sizeof(CachedRoute) * cap);
		}
		r = &cache.routes[cache.n++];
		r->id = DatumGetInt64(slot_getattr(slot, Anum_routes_id, &isnull));
		pattern = DatumGetTextPP(slot_getattr(slot, Anum_routes_topic_pattern, &isnull));
		old = MemoryContextSwitchTo(cache.cxt);
		r->plen = VARSIZE_ANY_EXHDR(pattern);
		r->pattern = pnstrdup(VARDATA_ANY(pattern), r->plen);
		MemoryContextSwitchTo(old);
		r->fanout = route_config_is_fanout(DatumGetJsonbP(slot_getattr(slot, Anum_routes_config, &isnull)));
		if (r->fanout)
			cache.nfanout++;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	qsort(cache.routes, cache.n, sizeof(CachedRoute), route_id_cmp);
	cache.valid = true;
}

/*
 * The destinations of a message of topic (len bytes) when an enabled
 * fan-out route matches it: true, with targets filled (see FanoutTargets).
 * False when none does: the message is one row, routed by its topic, as
 * without fan-out.
 */
bool
fanout_targets(const char *topic, int len, FanoutTargets *targets)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(routes_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	/* route changes committed since the last look (a test of a flag if none) */
	AcceptInvalidationMessages();
	if (!cache.valid)
		cache_build();
	if (cache.nfanout == 0)
		return false;

	targets->topic_route = false;
	targets->nroutes = 0;
	targets->route_ids = NULL;
	for (int i = 0; i < cache.n; i++)
	{
		CachedRoute *r = &cache.routes[i];

		if (route_match_rank(r->pattern, r->plen, topic, len) == ROUTE_NO_MATCH)
			continue;
		if (!r->fanout)
		{
			targets->topic_route = true;
			continue;
		}
		if (targets->route_ids == NULL)
			targets->route_ids = palloc(sizeof(int64) * cache.nfanout);
		targets->route_ids[targets->nroutes++] = r->id;
	}
	return targets->nroutes > 0;
}

/*
 * Trigger routes_changed (FOR EACH STATEMENT on txoutbox.routes): queue a
 * relcache invalidation of the table, which invalidates every backend's
 * cache (see the file header).  Needs no preload: a restore runs it too.
 */
Datum
txoutbox_routes_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("txoutbox._routes_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
