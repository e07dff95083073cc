/*-------------------------------------------------------------------------
 *
 * routes.c
 *	  Routes: add_route() with its validation, and the per-round route set
 *	  the dispatcher claims and publishes through.
 *
 * A pattern is an exact topic or a prefix ending in '*' ("orders.*"; "*"
 * alone matches every topic).  The most specific enabled route wins: an
 * exact match, else the matching prefix pattern with the longest prefix.
 * route_match_rank is the one place that rule is written: routes_match (the
 * dispatcher), _route_index (the claim's per-route policy) and route_for()
 * (the stats view) all use it.
 *
 * Fan-out routes ("fanout": true) are subscriptions, outside that rule:
 * each one that matches a topic gets a copy of its own of every message
 * enqueued on it (fanout.c), bound to it by route_id, and is never chosen
 * by topic (the SQL side passes their patterns as NULL to _route_index).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "publisher.h"
#include "route_state.h"
#include "routes.h"
#include "settings.h"
#include "txoutbox.h"
#include "wakeup.h"

PG_FUNCTION_INFO_V1(txoutbox_add_route);
PG_FUNCTION_INFO_V1(txoutbox_route_index);

/* ERROR unless pattern is an exact topic or a prefix ending in '*'. */
static void
check_pattern(const char *pattern)
{
	int			len = pg_mbstrlen(pattern);
	const char *star = strchr(pattern, '*');

	if (len < 1 || len > TXOUTBOX_MAX_TOPIC_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic_pattern must be 1 to %d characters long, not %d",
						TXOUTBOX_MAX_TOPIC_LEN, len)));
	if (star != NULL && star[1] != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid topic_pattern \"%s\"", pattern),
				 errdetail("A pattern is an exact topic or a prefix ending in \"*\", such as \"orders.*\".")));
}

/* The publisher called name, or ERROR naming the ones there are. */
static const Publisher *
lookup_publisher_or_error(const char *name)
{
	const Publisher *p = publisher_lookup(name);

	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown publisher \"%s\"", name),
				 errhint("Use one of %s.", publisher_names())));
	if (p->unavailable)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("publisher \"%s\" is not available", name),
				 errdetail("%s", p->unavailable)));
	return p;
}

/* An integer policy field within [min, max], or dflt when absent. */
static int64
policy_int(Jsonb *config, const char *key, int64 min, int64 max, int64 dflt)
{
	int64		v;

	if (!jsonb_config_int(config, key, &v))
		return dflt;
	if (v < min || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("route config field \"%s\" must be between " INT64_FORMAT " and " INT64_FORMAT,
						key, min, max)));
	return v;
}

/*
 * Is config a fan-out route's ("fanout": true)?  Never raises: a route
 * whose config is otherwise broken is still known for what it is.
 */
bool
route_config_is_fanout(Jsonb *config)
{
	JsonbValue	v;

	return JB_ROOT_IS_OBJECT(config) && !JB_ROOT_IS_SCALAR(config) &&
		getKeyJsonValueFromContainer(&config->root, "fanout", 6, &v) &&
		v.type == jbvBool && v.val.boolean;
}

/* The policy of a route whose config sets none: the settings apply. */
void
route_policy_default(RoutePolicy *policy)
{
	policy->ordered = false;
	policy->max_attempts = 0;
	policy->retry_base_delay_ms = -1;
	policy->retry_max_delay_ms = -1;
	policy->rate_limit = 0;
	policy->ttl_ms = 0;
	policy->fanout = false;
	policy->breaker_failures = -1;
	policy->breaker_cooldown_ms = 0;
	policy->breaker_max_cooldown_ms = 0;
}

/*
 * The delivery policy of a route's config (see RoutePolicy); ERROR on a bad
 * value.  The config is already known to be an object.
 */
void
route_policy_parse(Jsonb *config, RoutePolicy *policy)
{
	JsonbValue	v;

	route_policy_default(policy);
	if (getKeyJsonValueFromContainer(&config->root, "ordered", 7, &v) && v.type != jbvNull)
	{
		if (v.type != jbvBool)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("route config field \"ordered\" must be true or false")));
		policy->ordered = v.val.boolean;
	}
	policy->max_attempts = (int32) policy_int(config, "max_attempts", 1, 1000000, 0);
	policy->retry_base_delay_ms = policy_int(config, "retry_base_delay_ms", 1, INT_MAX, -1);
	policy->retry_max_delay_ms = policy_int(config, "retry_max_delay_ms", 1, INT_MAX, -1);
	if (getKeyJsonValueFromContainer(&config->root, "rate_limit", 10, &v) && v.type != jbvNull)
	{
		double		rate;

		if (v.type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("route config field \"rate_limit\" must be a number of messages per second")));
		rate = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v.val.numeric)));
		if (!(rate > 0 && rate <= 1000000))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("route config field \"rate_limit\" must be above 0 and at most 1000000")));
		policy->rate_limit = rate;
	}
	policy->ttl_ms = policy_int(config, "ttl_ms", 1, ROUTE_MAX_TTL_MS, 0);
	(void) jsonb_config_bool(config, "fanout", &policy->fanout);
	policy->breaker_failures = (int32) policy_int(config, "breaker_failures", 0, 1000000, -1);
	policy->breaker_cooldown_ms = (int32) policy_int(config, "breaker_cooldown_ms", 1, INT_MAX, 0);
	policy->breaker_max_cooldown_ms = (int32) policy_int(config, "breaker_max_cooldown_ms", 1, INT_MAX, 0);
}

/* add_route(): validate the route and insert it; returns the new row. */
static Datum
add_route(FunctionCallInfo fcinfo)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, JSONBOID};
	Datum		values[3];
	char	   *pattern;
	char	   *publisher;
	const Publisher *p;
	Jsonb	   *config;
	Datum		result;

	txoutbox_require_preload();
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("topic_pattern must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("publisher must not be null")));
	pattern = text_to_cstring(PG_GETARG_TEXT_PP(0));
	publisher = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_pattern(pattern);
	p = lookup_publisher_or_error(publisher);
	if (PG_ARGISNULL(2))
		values[2] = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	else
		values[2] = PG_GETARG_DATUM(2);
	config = DatumGetJsonbP(values[2]);
	(void) p->parse_config(config);
	{
		RoutePolicy policy;

		route_policy_parse(config, &policy);
	}

	values[0] = CStringGetTextDatum(pattern);
	values[1] = CStringGetTextDatum(publisher);

	SPI_connect();
	if (plan == NULL)
	{
		plan = SPI_prepare("INSERT INTO txoutbox.routes (topic_pattern, publisher, config)"
						   " VALUES ($1, $2, $3) RETURNING *", 3, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "txoutbox: could not prepare add_route");
	}
	/* no row limit: it would stop the statement before its AFTER STATEMENT
	 * trigger (routes_changed, fanout.c) fires */
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "txoutbox: add_route insert failed");
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();

	/* messages that waited for this route can go now */
	wakeup_at_commit();
	return result;
}

/*
 * SQL: add_route(topic_pattern, publisher, config)
 * The statement that calls it carries the route's secrets (a webhook
 * secret, header values, a password in a URL), so an error it raises is
 * reported without that statement in the server log: the server would
 * otherwise log it for every failed call (log_min_error_statement = error
 * by default).  Likewise without the error's context, which quotes the
 * calling statement when add_route() runs inside a function.  The client
 * still gets the whole error.
 */
Datum
txoutbox_add_route(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile Datum result = (Datum) 0;

	PG_TRY();
	{
		result = add_route(fcinfo);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		edata->hide_stmt = true;	/* what errhidestmt(true) sets */
		edata->hide_ctx = true;		/* what errhidecontext(true) sets */
		ReThrowError(edata);
	}
	PG_END_TRY();
	PG_RETURN_DATUM(result);
}

typedef struct ParseArgs
{
	OutboxRoute *route;
} ParseArgs;

/* Subtransaction body: parse one route's config. */
static void
parse_route(void *arg)
{
	OutboxRoute *r = ((ParseArgs *) arg)->route;

	route_policy_parse(r->config, &r->policy);
	r->parsed = r->publisher->parse_config(r->config);
}

/* A text[] Datum of n C strings, allocated in the current context. */
static Datum
text_array(char **strings, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(strings[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* An int8[] Datum of n int8 Datums, allocated in the current context. */
static Datum
int8_array(Datum *ids, int n)
{
	return PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/*
 * Whether a route without room takes topics that a prefix route with room
 * also matches: its pattern starts with that route's prefix.  (An exact
 * route with room needs no such check: it is the most specific for its
 * topic.)
 */
static bool
room_overlaps(const RouteSet *set)
{
	int			i,
				j;

	for (i = 0; i < set->n; i++)
	{
		const OutboxRoute *shut = &set->routes[i];

		if (shut->fanout || shut->broken != NULL || shut->room > 0)
			continue;
		for (j = 0; j < set->n; j++)
		{
			const OutboxRoute *open = &set->routes[j];
			size_t		plen = strlen(open->pattern);

			if (open->fanout || (open->broken == NULL && open->room == 0) ||
				plen == 0 || open->pattern[plen - 1] != '*')
				continue;
			if (strncmp(shut->pattern, open->pattern, plen - 1) == 0 &&
				strcmp(shut->pattern, open->pattern) != 0)
				return true;
		}
	}
	return false;
}

/* The overlap_patterns and overlap_room of set's with_room (see RouteFilter). */
static void
set_overlap(RouteSet *set)
{
	Datum	   *patterns;
	bool	   *pattern_nulls;
	Datum	   *room;
	int			dims[1];
	int			lbs[1] = {1};
	int			i;

	set->with_room.overlap_patterns = (Datum) 0;
	set->with_room.overlap_room = (Datum) 0;
	if (!room_overlaps(set))
		return;
	patterns = palloc(sizeof(Datum) * set->n);
	pattern_nulls = palloc(sizeof(bool) * set->n);
	room = palloc(sizeof(Datum) * set->n);
	for (i = 0; i < set->n; i++)
	{
		const OutboxRoute *r = &set->routes[i];

		pattern_nulls[i] = r->fanout;
		patterns[i] = r->fanout ? (Datum) 0 : CStringGetTextDatum(r->pattern);
		/* a broken route's messages are claimed, to fail with the reason */
		room[i] = BoolGetDatum(r->broken != NULL || r->room > 0);
	}
	dims[0] = set->n;
	set->with_room.overlap_patterns =
		PointerGetDatum(construct_md_array(patterns, pattern_nulls, 1, dims, lbs,
										   TEXTOID, -1, false, TYPALIGN_INT));
	set->with_room.overlap_room =
		PointerGetDatum(construct_array(room, set->n, BOOLOID, 1, true, TYPALIGN_CHAR));
}

/*
 * Load the enabled routes into set, allocated in cxt.  A route whose
 * publisher is unknown or whose config no longer parses (say, its function
 * was dropped) is kept with `broken` set, so its messages fail with that
 * reason instead of stopping the round.  Caller is connected to SPI, in a
 * transaction.
 */
void
routes_load(RouteSet *set, MemoryContext cxt)
{
	MemoryContext old;
	char	  **exact;
	char	  **prefixes;
	char	  **all_exact;
	char	  **all_prefixes;
	Datum	   *fanout_ids;
	Datum	   *all_fanout_ids;
	int			nexact = 0;
	int			nprefix = 0;
	int			nall_exact = 0;
	int			nall_prefix = 0;
	int			nfanout = 0;
	int			nall_fanout = 0;
	Datum	   *run_ids;
	int			nrun = 0;
	uint64		i;

	if (SPI_execute("SELECT id, topic_pattern, publisher, config, paused_at IS NOT NULL"
					" FROM txoutbox.routes WHERE enabled ORDER BY id", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "txoutbox: could not read routes");

	old = MemoryContextSwitchTo(cxt);
	set->n = (int) SPI_processed;
	set->room = 0;
	set->next_unblock = 0;
	set->routes = palloc0(sizeof(OutboxRoute) * Max(set->n, 1));
	exact = palloc(sizeof(char *) * Max(set->n, 1));
	prefixes = palloc(sizeof(char *) * Max(set->n, 1));
	all_exact = palloc(sizeof(char *) * Max(set->n, 1));
	all_prefixes = palloc(sizeof(char *) * Max(set->n, 1));
	fanout_ids = palloc(sizeof(Datum) * Max(set->n, 1));
	all_fanout_ids = palloc(sizeof(Datum) * Max(set->n, 1));
	run_ids = palloc(sizeof(Datum) * Max(set->n, 1));

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		OutboxRoute *r = &set->routes[i];
		bool		isnull;
		char	   *publisher;
		size_t		len;
		bool		is_prefix;

		r->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		r->pattern = SPI_getvalue(tup, desc, 2);
		publisher = SPI_getvalue(tup, desc, 3);
		r->config = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
		r->paused = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		r->fanout = route_config_is_fanout(r->config);
		r->room = 0;
		route_policy_default(&r->policy);
		len = strlen(r->pattern);
		r->publisher = publisher_lookup(publisher);

		if (r->publisher == NULL)
			r->broken = psprintf("route %lld names unknown publisher \"%s\"",
								 (long long) r->id, publisher);
		else if (r->publisher->unavailable)
			r->broken = psprintf("route %lld (%s): publisher \"%s\" is not available: %s",
								 (long long) r->id, r->pattern, publisher,
								 r->publisher->unavailable);
		else
		{
			ParseArgs	args = {r};
			char	   *error = NULL;

			if (!try_in_subtransaction(parse_route, &args, &error, NULL))
				r->broken = psprintf("route %lld (%s) is misconfigured: %s",
									 (long long) r->id, r->pattern, error);
		}

		is_prefix = len > 0 && r->pattern[len - 1] == '*';
		if (r->fanout)
			all_fanout_ids[nall_fanout++] = Int64GetDatum(r->id);
		else if (is_prefix)
			all_prefixes[nall_prefix++] = pnstrdup(r->pattern, len - 1);
		else
			all_exact[nall_exact++] = r->pattern;
		/*
		 * What it may take this round: nothing while paused, held by its
		 * endpoint, its breaker open, out of tokens, or with all it may
		 * have in flight; such a route is not claimed from now.
		 */
		if (r->broken == NULL)
		{
			TimestampTz next_change = 0;

			r->room = route_state_room(r, &next_change);
			if (r->room > 0 && r->publisher->capacity)
				r->room = Min(r->room, r->publisher->capacity(r));
			if (r->room == 0 && next_change != 0 &&
				(set->next_unblock == 0 || next_change < set->next_unblock))
				set->next_unblock = next_change;
			set->room = Min((int64) INT_MAX, set->room + r->room);
		}
		else
			set->room = INT_MAX;	/* its messages fail with the reason */
		/* ordered, published in the claiming transaction: runs of a key */
		if (r->broken == NULL && r->policy.ordered &&
			r->publisher->kind == PUBLISHER_IN_TRANSACTION)
			run_ids[nrun++] = Int64GetDatum(r->id);
		if (r->broken == NULL && r->room == 0)
			;
		else if (r->fanout)
			fanout_ids[nfanout++] = Int64GetDatum(r->id);
		else if (is_prefix)
			prefixes[nprefix++] = all_prefixes[nall_prefix - 1];
		else
			exact[nexact++] = r->pattern;
	}
	set->with_room.exact = text_array(exact, nexact);
	set->with_room.prefixes = text_array(prefixes, nprefix);
	set->with_room.fanout_ids = int8_array(fanout_ids, nfanout);
	memset(&set->all, 0, sizeof(set->all));
	set->all.exact = text_array(all_exact, nall_exact);
	set->all.prefixes = text_array(all_prefixes, nall_prefix);
	set->all.fanout_ids = int8_array(all_fanout_ids, nall_fanout);
	set->run_ids = int8_array(run_ids, nrun);
	set_overlap(set);
	MemoryContextSwitchTo(old);
}

/*
 * How specifically pattern (plen bytes) matches topic (tlen bytes): an
 * exact match ranks above every prefix, a longer prefix above a shorter
 * one; ROUTE_NO_MATCH when it does not match.
 */
int
route_match_rank(const char *pattern, int plen, const char *topic, int tlen)
{
	if (plen > 0 && pattern[plen - 1] == '*')
	{
		if (plen - 1 <= tlen && memcmp(pattern, topic, plen - 1) == 0)
			return plen - 1;
		return ROUTE_NO_MATCH;
	}
	if (plen == tlen && memcmp(pattern, topic, plen) == 0)
		return INT_MAX;
	return ROUTE_NO_MATCH;
}

/* The most specific route for topic (fan-out routes aside), or NULL. */
OutboxRoute *
routes_match(const RouteSet *set, const char *topic)
{
	OutboxRoute *best = NULL;
	int			best_rank = ROUTE_NO_MATCH;
	int			tlen = strlen(topic);
	int			i;

	for (i = 0; i < set->n; i++)
	{
		OutboxRoute *r = &set->routes[i];
		int			rank;

		if (r->fanout)
			continue;
		rank = route_match_rank(r->pattern, strlen(r->pattern), topic, tlen);

		if (rank > best_rank)
		{
			best = r;
			best_rank = rank;
		}
	}
	return best;
}

/*
 * The route of a message: its fan-out route when it is a copy bound to one
 * (route_id, or NULL when that route is not enabled), else the most
 * specific route of its topic.
 */
OutboxRoute *
routes_for_message(const RouteSet *set, const char *topic, int64 route_id)
{
	if (route_id == 0)
		return routes_match(set, topic);
	for (int i = 0; i < set->n; i++)
		if (set->routes[i].id == route_id)
			return &set->routes[i];
	return NULL;
}

/* Does any enabled route, a fan-out route or not, take topic's messages? */
bool
routes_any_match(const RouteSet *set, const char *topic)
{
	int			tlen = strlen(topic);

	for (int i = 0; i < set->n; i++)
		if (route_match_rank(set->routes[i].pattern, strlen(set->routes[i].pattern),
							 topic, tlen) != ROUTE_NO_MATCH)
			return true;
	return false;
}

/*
 * SQL: _route_index(topic, patterns text[]): the 1-based position in
 * patterns of the most specific one that matches topic, or NULL.  The claim
 * query uses it to look up the route's "ordered" and "max_attempts".
 */
Datum
txoutbox_route_index(PG_FUNCTION_ARGS)
{
	text	   *topic = PG_GETARG_TEXT_PP(0);
	const char *t = VARDATA_ANY(topic);
	int			tlen = VARSIZE_ANY_EXHDR(topic);
	Datum	   *patterns;
	bool	   *pnulls;
	int			np,
				i,
				best = -1,
				best_rank = ROUTE_NO_MATCH;

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &patterns, &pnulls, &np);
	for (i = 0; i < np; i++)
	{
		text	   *pat;
		int			rank;

		if (pnulls[i])
			continue;
		pat = DatumGetTextPP(patterns[i]);
		rank = route_match_rank(VARDATA_ANY(pat), VARSIZE_ANY_EXHDR(pat), t, tlen);
		if (rank > best_rank)
		{
			best = i;
			best_rank = rank;
		}
	}
	if (best < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(best + 1);
}
