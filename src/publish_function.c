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
 * and what a raising call wrote is rolled back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "publisher.h"

static const char *const function_keys[] = {"function", NULL};

typedef struct FunctionCallArgs
{
	Oid			fn;
	Datum		row;
} FunctionCallArgs;

/* The OID of name(txoutbox.messages), or ERROR. */
static Oid
lookup_publisher_function(const char *name)
{
	List	   *names = stringToQualifiedNameList(name);
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
				 errhint("A function publisher calls a function that takes the message row.")));
	return fn;
}

/* Config {"function": "schema.name"}: the function must exist now. */
static void *
function_parse_config(Jsonb *config)
{
	char	   *name;
	Oid		   *fn = palloc(sizeof(Oid));

	jsonb_config_check_keys(config, "function", function_keys);
	name = jsonb_config_string(config, "function");
	if (name == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a function route needs \"function\" in its config")));
	*fn = lookup_publisher_function(name);
	return fn;
}

/* Subtransaction body: call the function with the row, ignore its result. */
static void
call_function(void *arg)
{
	FunctionCallArgs *a = (FunctionCallArgs *) arg;
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 1);

	fmgr_info(a->fn, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = a->row;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
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

		args.fn = *(Oid *) items[i].route->parsed;
		args.row = items[i].msg->row;
		if (try_in_subtransaction(call_function, &args, &error))
			publisher_set_outcome(&items[i], PUBLISH_SUCCEEDED, NULL);
		else
			publisher_set_outcome(&items[i], PUBLISH_RETRY, "%s raised: %s",
								  format_procedure(args.fn), error);
	}
}

const Publisher function_publisher = {
	.name = "function",
	.transactional = true,
	.parse_config = function_parse_config,
	.publish = function_publish,
};
