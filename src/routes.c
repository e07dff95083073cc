/*-------------------------------------------------------------------------
 *
 * routes.c
 *	  Routes: add_route() with its validation, and the per-round route set
 *	  the dispatcher claims and publishes through.
 *
 * A pattern is an exact topic or a prefix ending in '*' ("orders.*"; "*"
 * alone matches every topic).  The most specific enabled route wins: an
 * exact match, else the matching prefix pattern with the longest prefix.
 * The SQL function txoutbox.route_for() applies the same rule for the
 * stats view.
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
#include "txoutbox.h"

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
				 errhint("Use one of notify, http, function.")));
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

/* The policy of a route whose config sets none: the settings apply. */
void
route_policy_default(RoutePolicy *policy)
{
	policy->ordered = false;
	policy->max_attempts = 0;
	policy->retry_base_delay_ms = -1;
	policy->retry_max_delay_ms = -1;
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
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "txoutbox: add_route insert failed");
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();

	/* messages that waited for this route can go now */
	txoutbox_wake_at_commit();
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
	int			nexact = 0;
	int			nprefix = 0;
	int			nall_exact = 0;
	int			nall_prefix = 0;
	uint64		i;

	if (SPI_execute("SELECT id, topic_pattern, publisher, config FROM txoutbox.routes"
					" WHERE enabled ORDER BY id", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "txoutbox: could not read routes");

	old = MemoryContextSwitchTo(cxt);
	set->n = (int) SPI_processed;
	set->routes = palloc0(sizeof(OutboxRoute) * Max(set->n, 1));
	exact = palloc(sizeof(char *) * Max(set->n, 1));
	prefixes = palloc(sizeof(char *) * Max(set->n, 1));
	all_exact = palloc(sizeof(char *) * Max(set->n, 1));
	all_prefixes = palloc(sizeof(char *) * Max(set->n, 1));

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		OutboxRoute *r = &set->routes[i];
		bool		isnull;
		char	   *publisher;
		size_t		len;

		r->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		r->pattern = SPI_getvalue(tup, desc, 2);
		publisher = SPI_getvalue(tup, desc, 3);
		r->config = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
		route_policy_default(&r->policy);
		len = strlen(r->pattern);
		r->is_prefix = len > 0 && r->pattern[len - 1] == '*';
		r->prefix_len = r->is_prefix ? (int) len - 1 : 0;
		r->publisher = publisher_lookup(publisher);

		if (r->is_prefix)
			all_prefixes[nall_prefix++] = pnstrdup(r->pattern, len - 1);
		else
			all_exact[nall_exact++] = r->pattern;
		/* a route with all it may have in flight gets nothing more now */
		if (r->publisher && r->publisher->capacity && r->publisher->capacity(r->id) == 0)
			;
		else if (r->is_prefix)
			prefixes[nprefix++] = all_prefixes[nall_prefix - 1];
		else
			exact[nexact++] = r->pattern;

		if (r->publisher == NULL)
			r->broken = psprintf("route %lld names unknown publisher \"%s\"",
								 (long long) r->id, publisher);
		else
		{
			ParseArgs	args = {r};
			char	   *error = NULL;

			if (!try_in_subtransaction(parse_route, &args, &error, NULL))
				r->broken = psprintf("route %lld (%s) is misconfigured: %s",
									 (long long) r->id, r->pattern, error);
		}
	}
	set->exact = text_array(exact, nexact);
	set->prefixes = text_array(prefixes, nprefix);
	set->all_exact = text_array(all_exact, nall_exact);
	set->all_prefixes = text_array(all_prefixes, nall_prefix);
	MemoryContextSwitchTo(old);
}

/* The most specific route for topic, or NULL. */
OutboxRoute *
routes_match(const RouteSet *set, const char *topic)
{
	OutboxRoute *best = NULL;
	int			i;

	for (i = 0; i < set->n; i++)
	{
		OutboxRoute *r = &set->routes[i];

		if (!r->is_prefix)
		{
			if (strcmp(r->pattern, topic) == 0)
				return r;
		}
		else if (strncmp(r->pattern, topic, r->prefix_len) == 0 &&
				 (best == NULL || r->prefix_len > best->prefix_len))
			best = r;
	}
	return best;
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
				best_len = -1;

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &patterns, &pnulls, &np);
	for (i = 0; i < np; i++)
	{
		text	   *pat;
		const char *p;
		int			plen;

		if (pnulls[i])
			continue;
		pat = DatumGetTextPP(patterns[i]);
		p = VARDATA_ANY(pat);
		plen = VARSIZE_ANY_EXHDR(pat);
		if (plen > 0 && p[plen - 1] == '*')
		{
			if (plen - 1 <= tlen && memcmp(p, t, plen - 1) == 0 && plen - 1 > best_len)
			{
				best = i;
				best_len = plen - 1;
			}
		}
		else if (plen == tlen && memcmp(p, t, plen) == 0)
		{
			best = i;
			break;
		}
	}
	if (best < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(best + 1);
}
