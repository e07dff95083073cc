/*-------------------------------------------------------------------------
 *
 * route_health.c
 *	  The operator's view of routes: pause_route() / resume_route(), and
 *	  route_health(), each route's circuit breaker, rate and pause
 *	  (route_state.c holds the shared state).
 *
 * A pause is a column of txoutbox.routes (paused_at), so it survives
 * restarts; a paused route keeps its messages and claims nothing, so it
 * counts no attempts.  Resuming wakes the dispatchers at commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "publisher.h"
#include "route_state.h"
#include "routes.h"
#include "txoutbox.h"
#include "wakeup.h"

PG_FUNCTION_INFO_V1(txoutbox_pause_route);
PG_FUNCTION_INFO_V1(txoutbox_resume_route);
PG_FUNCTION_INFO_V1(txoutbox_route_health);

/* Set or clear route id's pause; returns the route's row. */
static Datum
set_pause(FunctionCallInfo fcinfo, bool pause)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	Oid			argtypes[1] = {INT8OID};
	Datum		id;
	Datum		result;
	SPIPlanPtr *plan = &plans[pause ? 1 : 0];

	txoutbox_require_preload();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("id must not be null")));
	id = PG_GETARG_DATUM(0);
	SPI_connect();
	if (*plan == NULL)
	{
		*plan = SPI_prepare(pause ?
							"UPDATE txoutbox.routes SET paused_at = coalesce(paused_at, pg_catalog.now())"
							" WHERE id OPERATOR(pg_catalog.=) $1 RETURNING *" :
							"UPDATE txoutbox.routes SET paused_at = NULL"
							" WHERE id OPERATOR(pg_catalog.=) $1 RETURNING *",
							1, argtypes);
		if (*plan == NULL || SPI_keepplan(*plan) != 0)
			elog(ERROR, "txoutbox: could not prepare the pause of a route");
	}
	/* no row limit: it would stop the statement before its AFTER STATEMENT
	 * trigger (routes_changed, fanout.c) fires */
	if (SPI_execute_plan(*plan, &id, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "txoutbox: could not pause or resume the route");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("route %lld does not exist", (long long) DatumGetInt64(id))));
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	if (!pause)
		wakeup_at_commit();		/* its messages may go now */
	PG_RETURN_DATUM(result);
}

/* SQL: pause_route(id): its messages stay where they are until resumed. */
Datum
txoutbox_pause_route(PG_FUNCTION_ARGS)
{
	return set_pause(fcinfo, true);
}

/* SQL: resume_route(id) */
Datum
txoutbox_resume_route(PG_FUNCTION_ARGS)
{
	return set_pause(fcinfo, false);
}

/* Subtransaction body: a route's delivery policy (its config may be broken). */
static void
parse_policy(void *arg)
{
	OutboxRoute *r = (OutboxRoute *) arg;

	route_policy_parse(r->config, &r->policy);
}

/*
 * SQL: route_health(): per route (enabled or not) its state (closed, open,
 * half-open, paused), consecutive endpoint failures, since when, the next
 * probe, the last endpoint error, its rate limit and the rate it sends at.
 */
Datum
txoutbox_route_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	uint64		i;

	txoutbox_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	if (SPI_execute("SELECT id, topic_pattern, publisher, config, paused_at FROM txoutbox.routes ORDER BY id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "txoutbox: could not read routes");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		OutboxRoute r;
		RouteHealth h;
		Datum		values[11];
		bool		nulls[11];
		bool		isnull;
		bool		paused;
		Datum		paused_at;
		char	   *error = NULL;

		memset(&r, 0, sizeof(r));
		memset(nulls, 0, sizeof(nulls));
		r.id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		r.pattern = SPI_getvalue(tup, desc, 2);
		r.publisher = publisher_lookup(SPI_getvalue(tup, desc, 3));
		r.config = DatumGetJsonbP(SPI_getbinval(tup, desc, 4, &isnull));
		paused_at = SPI_getbinval(tup, desc, 5, &isnull);
		paused = !isnull;
		route_policy_default(&r.policy);
		(void) try_in_subtransaction(parse_policy, &r, &error, NULL);
		route_state_health(&r, &h);

		values[0] = Int64GetDatum(r.id);
		values[1] = CStringGetTextDatum(r.pattern);
		values[2] = CStringGetTextDatum(SPI_getvalue(tup, desc, 3));
		values[3] = CStringGetTextDatum(paused ? "paused" :
										h.breaker == BREAKER_OPEN ? "open" :
										h.breaker == BREAKER_HALF_OPEN ? "half-open" : "closed");
		values[4] = Int32GetDatum(h.failures);
		values[5] = TimestampTzGetDatum(paused ? DatumGetTimestampTz(paused_at) : h.since);
		nulls[5] = !paused && h.since == 0;
		values[6] = TimestampTzGetDatum(h.next_probe);
		nulls[6] = paused || h.breaker == BREAKER_CLOSED || h.next_probe == 0;
		values[7] = CStringGetTextDatum(h.last_error);
		nulls[7] = h.last_error[0] == '\0';
		values[8] = Float8GetDatum(r.policy.rate_limit);
		nulls[8] = r.policy.rate_limit <= 0;
		values[9] = Float8GetDatum(h.rate);
		values[10] = TimestampTzGetDatum(h.hold_until);
		nulls[10] = h.hold_until == 0 || h.hold_until <= GetCurrentTimestamp();
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
