/*-------------------------------------------------------------------------
 *
 * publish_function.c
 *	  The function publisher: calls a user's SQL function with the message
 *	  row (config {"function": "schema.name"}).  Returning normally is
 *	  success; raising is a retryable failure whose message becomes
 *	  last_error.
 *
 * Transactional: each call runs in its own subtransaction of the claiming
 * transaction, so what the function wrote commits with the succeeded mark,
 * and what a raising call wrote is rolled back.  "timeout_ms" in the config
 * bounds each call in the worker (a statement timeout around the call); in
 * dispatch() the caller's own statement_timeout applies.
 *
 * The function runs as its owner (not as the worker's superuser, nor as the
 * owner of dispatch()), so whoever can replace its body gains nothing, and
 * with search_path = pg_catalog, pg_temp whoever calls dispatch() (so nobody
 * can steer its unqualified names): like any SECURITY DEFINER function, it
 * should qualify names or SET its own search_path.  It runs as a
 * security-restricted operation inside a GUC nest level that is rolled back
 * when it returns (see call_function): nothing it sets reaches the worker's
 * own statements or the session that called dispatch().
 *
 * A query cancel during a call is that message's failure only when it is
 * the route's timeout; any other (pg_cancel_backend) ends the round, like a
 * cancel of any statement, also when it is still pending after the call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_compat.h"

#include "catalog/namespace.h"
#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/timeout.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "publisher.h"
#include "settings.h"

static const char *const function_keys[] = {"function", "timeout_ms", NULL};

typedef struct FunctionRoute
{
	Oid			fn;
	Oid			owner;
	int			timeout_ms;		/* 0: none */
} FunctionRoute;

typedef struct FunctionCallArgs
{
	Oid			fn;
	Oid			owner;
	Datum		row;
} FunctionCallArgs;

/* The OID of name(txoutbox.messages), or ERROR. */
static Oid
lookup_publisher_function(const char *name)
{
	List	   *names = compat_qualified_name_list(name);
	Oid			nsp = get_namespace_oid("txoutbox", false);
	Oid			argtype;
	Oid			fn;

	argtype = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
							  CStringGetDatum("messages"), ObjectIdGetDatum(nsp));
	fn = LookupFuncName(names, 1, &argtype, true);
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s(txoutbox.messages) does not exist", name),
				 errhint("A function publisher calls a function that takes the message row; schema-qualify its name.")));
	return fn;
}

/* Config {"function": "schema.name", "timeout_ms": n}: the function must exist now. */
static void *
function_parse_config(Jsonb *config)
{
	char	   *name;
	FunctionRoute *route = palloc0(sizeof(FunctionRoute));
	int64		timeout;

	jsonb_config_check_keys(config, "function", function_keys);
	name = jsonb_config_string(config, "function");
	if (name == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a function route needs \"function\" in its config")));
	route->fn = lookup_publisher_function(name);
	{
		HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(route->fn));

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for function %u", route->fn);
		route->owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
		ReleaseSysCache(tup);
	}
	if (jsonb_config_int(config, "timeout_ms", &timeout))
	{
		if (timeout < 1 || timeout > 3600 * 1000)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("route config field \"timeout_ms\" must be between 1 and 3600000")));
		route->timeout_ms = (int) timeout;
	}
	return route;
}

/*
 * Subtransaction body: call the function with the row, ignoring its result,
 * the way PostgreSQL runs user code on someone else's behalf (VACUUM and
 * ANALYZE running index expressions): as the function's owner, in a
 * security-restricted operation (no SET ROLE, no temporary objects, no
 * LISTEN, no cursors WITH HOLD: nothing that outlives the call), inside a
 * GUC nest level that is rolled back when the call returns, so no setting
 * it makes survives it, not even a session-level SET, with search_path
 * pinned to pg_catalog, pg_temp.  An error's subtransaction abort restores
 * the user, the security context and the settings.
 */
static void
call_function(void *arg)
{
	FunctionCallArgs *a = (FunctionCallArgs *) arg;
	FmgrInfo	flinfo;
	Oid			save_user;
	int			save_sec;
	int			nestlevel;
	LOCAL_FCINFO(fcinfo, 1);

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(a->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nestlevel = NewGUCNestLevel();
	compat_restrict_search_path();

	fmgr_info(a->fn, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = a->row;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);

	/* roll back whatever the function set, SET and set_config() alike */
	AtEOXact_GUC(false, nestlevel);
	SetUserIdAndSecContext(save_user, save_sec);
}

/*
 * Was a query cancel raised by a call the statement timeout the route's
 * "timeout_ms" armed?  It was if that timeout is no longer active: it
 * fired (nothing else disables it while the call runs).
 */
static bool
route_timeout_fired(void)
{
	return !get_timeout_active(STATEMENT_TIMEOUT);
}

/* Call the route's function once per message, each in a subtransaction. */
static void
function_publish(PublishItem *items, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		FunctionCallArgs args;
		char	   *error = NULL;

		const FunctionRoute *route = (const FunctionRoute *) items[i].route->parsed;
		bool		timed = route->timeout_ms > 0 && compat_am_background_worker();
		volatile bool ok = false;

		args.fn = route->fn;
		args.owner = route->owner;
		args.row = items[i].msg->row;

		/*
		 * The route's own timeout (worker only) is this message's failure;
		 * any other cancel (pg_cancel_backend) ends the round.
		 */
		if (timed)
			enable_timeout_after(STATEMENT_TIMEOUT, route->timeout_ms);
		PG_TRY();
		{
			ok = try_in_subtransaction(call_function, &args, &error,
									   timed ? route_timeout_fired : NULL);
		}
		PG_CATCH();
		{
			/* a cancel that ends the round: the timeout must not outlive it */
			if (timed)
				disable_timeout(STATEMENT_TIMEOUT, false);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (timed)
		{
			disable_timeout(STATEMENT_TIMEOUT, true);

			/*
			 * Our timeout fired after the call had returned (or had failed):
			 * its cancel is still pending and must not end the round.  A
			 * cancel pending for any other reason stays pending.
			 */
			if (get_timeout_indicator(STATEMENT_TIMEOUT, true))
				QueryCancelPending = false;
		}
		if (ok)
			publisher_set_outcome(&items[i], PUBLISH_SUCCEEDED, NULL);
		else
			publisher_set_outcome(&items[i], PUBLISH_RETRY, "%s raised: %s",
								  format_procedure(args.fn), error);
	}
}

const Publisher function_publisher = {
	.name = "function",
	.kind = PUBLISHER_AFTER_LEASE,
	.parse_config = function_parse_config,
	.publish = function_publish,
};
