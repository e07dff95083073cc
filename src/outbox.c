/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The message state machine: enqueue, claim, mark_succeeded, mark_failed
 *	  and replay as SQL functions, plus the batch forms the dispatcher uses.
 *
 * Every statement is prepared once per backend and kept (SPI_keepplan); the
 * plan cache re-plans it if the extension is dropped and created again.
 * A transition is one UPDATE guarded by the expected status (and consumer),
 * so a concurrent change is seen by the UPDATE's re-check rather than by a
 * separate read; only when it matches nothing do we read the row to say why.
 *
 * claim() selects candidates with FOR UPDATE SKIP LOCKED in a materialised
 * CTE (so LIMIT is exact and rows locked by another claimer are skipped),
 * fails expired leases that have no attempts left, and claims the rest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"


#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "fanout.h"
#include "low_water.h"
#include "message.h"
#include "message_insert.h"
#include "outbox.h"
#include "pg_compat.h"
#include "settings.h"
#include "trace_context.h"
#include "txoutbox.h"
#include "uuidv7.h"
#include "wakeup.h"

/*
 * The statements below do not depend on search_path: every function,
 * aggregate, operator and type they name is schema-qualified (CASE,
 * COALESCE, GREATEST, LEAST and ANY are syntax; int and numeric are
 * keywords for pg_catalog's types).  They run in the worker as the
 * bootstrap superuser and in dispatch() as the extension's owner: a name
 * resolved in a schema another role controls would run its code with
 * those rights.
 */
#define UNFINISHED "'{pending,retrying,processing}'::pg_catalog.text[]"
#define KEY_BLOCKING "'{pending,processing,retrying,failed}'::pg_catalog.text[]"

/*
 * Whether message m is on the routes of a RouteFilter, given as parameters
 * (EXACT, PREFIXES, FANOUT_IDS, PATTERNS, ROOM: "$n"); M_ROUTE_ID is the
 * expression for m.route_id.  A copy bound to a fan-out route is on it; any
 * other message by its topic, and only where its own route (the most
 * specific) has room when PATTERNS is not NULL.
 */
#define ON_ROUTES(M_ROUTE_ID, EXACT, PREFIXES, FANOUT_IDS, PATTERNS, ROOM) \
	"(" EXACT "::pg_catalog.text[] IS NULL" \
	" OR (" M_ROUTE_ID " IS NULL AND (m.topic OPERATOR(pg_catalog.=) ANY (" EXACT ")" \
	"                               OR m.topic OPERATOR(pg_catalog.^@) ANY (" PREFIXES "))" \
	"     AND (" PATTERNS "::pg_catalog.text[] IS NULL" \
	"          OR (" ROOM "::pg_catalog.bool[])[txoutbox._route_index(m.topic, " PATTERNS ")]))" \
	" OR " M_ROUTE_ID " OPERATOR(pg_catalog.=) ANY (" FANOUT_IDS "::pg_catalog.int8[]))"

PG_FUNCTION_INFO_V1(txoutbox_enqueue);
PG_FUNCTION_INFO_V1(txoutbox_claim);
PG_FUNCTION_INFO_V1(txoutbox_mark_succeeded);
PG_FUNCTION_INFO_V1(txoutbox_mark_failed);
PG_FUNCTION_INFO_V1(txoutbox_replay);
PG_FUNCTION_INFO_V1(txoutbox_skip);

/* Prepare sql once per backend and keep the plan. */
static SPIPlanPtr
cached_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

		if (plan == NULL)
			elog(ERROR, "txoutbox: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "txoutbox: SPI_keepplan failed");
		*slot = plan;
	}
	return *slot;
}

/* Run a kept plan; elog on an SPI failure code (errors themselves throw). */
static int
run_plan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "txoutbox: SPI_execute_plan returned %s", SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/* ERROR 22004 for a required argument given as NULL. */
pg_noreturn static void
null_argument(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s must not be null", name)));
}

/* A text argument that must not be NULL, as a C string. */
static char *
required_text(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		null_argument(name);
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* A timestamptz argument that must be given and finite. */
static TimestampTz
required_finite_time(FunctionCallInfo fcinfo, int argno, const char *name)
{
	TimestampTz ts;

	if (PG_ARGISNULL(argno))
		null_argument(name);
	ts = PG_GETARG_TIMESTAMPTZ(argno);
	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a finite timestamp", name)));
	return ts;
}

/*
 * t + us, for a time computed from a caller's time or interval: ERROR 22008
 * when the sum overflows or is past the range of timestamptz (it could be
 * stored, but not printed: get() and list() would fail on the row).  what
 * names the sum in the message.
 */
TimestampTz
outbox_time_plus_us(TimestampTz t, int64 us, const char *what)
{
	TimestampTz result;

	if (TIMESTAMP_NOT_FINITE(t) || pg_add_s64_overflow(t, us, &result) ||
		!IS_VALID_TIMESTAMP(result))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s is out of range", what),
				 errdetail("It would be past the last time a timestamptz can hold.")));
	return result;
}

/* Topic: 1 to 255 characters. */
static void
check_topic(text *topic)
{
	int			len = pg_mbstrlen_with_len(VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic));

	if (len < 1 || len > TXOUTBOX_MAX_TOPIC_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic must be 1 to %d characters long, not %d",
						TXOUTBOX_MAX_TOPIC_LEN, len)));
}

/* Is the header name (len bytes) name, ASCII case-insensitively? */
static bool
header_is(const char *name, int len, const char *header)
{
	return len == (int) strlen(header) && pg_strncasecmp(name, header, len) == 0;
}

/*
 * Headers: a JSON object whose values are strings.  Names must be HTTP
 * header tokens and values must not contain line breaks, since the http
 * publisher sends them as they are; a traceparent or tracestate (in any
 * case) must be a W3C one.  Returns whether there is a traceparent.
 */
static bool
check_headers(Jsonb *headers)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			trace_header = 0;	/* the key just read: 1 traceparent, 2
									 * tracestate, 0 another */
	bool		has_traceparent = false;

	if (!JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must be a JSON object whose values are strings")));

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			int			i;

			if (v.val.string.len == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("header names must not be empty")));
			for (i = 0; i < v.val.string.len; i++)
			{
				unsigned char c = (unsigned char) v.val.string.val[i];

				if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c) != NULL)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("header name \"%.*s\" is not a valid HTTP header name",
									v.val.string.len, v.val.string.val)));
			}
			trace_header = header_is(v.val.string.val, v.val.string.len, TRACEPARENT_HEADER) ? 1 :
				header_is(v.val.string.val, v.val.string.len, TRACESTATE_HEADER) ? 2 : 0;
		}
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("headers must be a JSON object whose values are strings"),
						 errdetail("A header value is a JSON %s.",
								   v.type == jbvNumeric ? "number" :
								   v.type == jbvBool ? "boolean" :
								   v.type == jbvNull ? "null" : "array or object")));
			if (memchr(v.val.string.val, '\r', v.val.string.len) ||
				memchr(v.val.string.val, '\n', v.val.string.len))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("header values must not contain line breaks")));
			if (trace_header != 0)
			{
				const char *name = trace_header == 1 ? TRACEPARENT_HEADER : TRACESTATE_HEADER;
				const char *problem = trace_header == 1 ?
					trace_traceparent_problem(v.val.string.val, v.val.string.len) :
					trace_tracestate_problem(v.val.string.val, v.val.string.len);

				if (problem)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("header %s is not a valid W3C %s", name, name),
							 errdetail("%s", problem)));
				if (trace_header == 1)
					has_traceparent = true;
			}
		}
	}
	return has_traceparent;
}

/*
 * headers with the transaction's trace context (the settings
 * txoutbox.traceparent and txoutbox.tracestate, checked when set) added.
 */
static Datum
headers_with_trace_context(Datum headers)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"" TRACEPARENT_HEADER "\":");
	escape_json(&buf, txoutbox_traceparent);
	if (txoutbox_tracestate != NULL && txoutbox_tracestate[0] != '\0')
	{
		appendStringInfoString(&buf, ",\"" TRACESTATE_HEADER "\":");
		escape_json(&buf, txoutbox_tracestate);
	}
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall2(jsonb_concat, headers,
							   DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * The enqueue INSERT, through SPI: for a table the fast insert does not
 * serve (see message_insert.c).  row/row_nulls: the whole row.  The
 * columns 0.2.0 added are named only when the row sets one (so that a
 * 0.1.0 table, before its update, takes the others).  With check_key, an
 * idempotency key already taken is not inserted (ON CONFLICT DO NOTHING)
 * and the message holding it is returned instead: then true.
 */
static bool
insert_by_spi(Datum *row, bool *row_nulls, bool check_key, Datum *result)
{
	static SPIPlanPtr plan_0_1_0 = NULL;
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_keyed = NULL;
	static SPIPlanPtr plan_holder = NULL;
	static Oid	argtypes[15] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		JSONBOID, JSONBOID, TEXTOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	INT8OID, UUIDOID, TEXTOID, TIMESTAMPTZOID};
	static const int columns[15] = {
		Anum_messages_id, Anum_messages_tenant_id, Anum_messages_org_id,
		Anum_messages_topic, Anum_messages_message_key, Anum_messages_payload,
		Anum_messages_headers, Anum_messages_correlation_id,
		Anum_messages_max_attempts, Anum_messages_available_at,
		Anum_messages_created_at, Anum_messages_route_id, Anum_messages_fanout_of,
		Anum_messages_idempotency_key, Anum_messages_expires_at
	};
#define INSERT_COLUMNS \
	"INSERT INTO txoutbox.messages (id, tenant_id, org_id, topic, message_key, " \
	"payload, headers, correlation_id, status, attempt_count, max_attempts, " \
	"available_at, created_at, updated_at"
#define INSERT_VALUES "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $10, $11, $11"
	Datum		values[15];
	char		nulls[15];
	bool		full = false;
	bool		existed = false;

	for (int i = 0; i < 15; i++)
	{
		values[i] = row[columns[i] - 1];
		nulls[i] = row_nulls[columns[i] - 1] ? 'n' : ' ';
		if (i >= 11 && !row_nulls[columns[i] - 1])
			full = true;
	}
	SPI_connect();
	if (!full)
		run_plan(cached_plan(&plan_0_1_0, INSERT_COLUMNS ") " INSERT_VALUES ") RETURNING *",
							 11, argtypes),
				 values, nulls, SPI_OK_INSERT_RETURNING);
	else if (!check_key)
		run_plan(cached_plan(&plan, INSERT_COLUMNS ", route_id, fanout_of, idempotency_key, expires_at) "
							 INSERT_VALUES ", $12, $13, $14, $15) RETURNING *",
							 15, argtypes),
				 values, nulls, SPI_OK_INSERT_RETURNING);
	else if (run_plan(cached_plan(&plan_keyed, INSERT_COLUMNS ", route_id, fanout_of, idempotency_key, expires_at) "
								  INSERT_VALUES ", $12, $13, $14, $15)"
								  " ON CONFLICT (topic, tenant_id, idempotency_key)"
								  "   WHERE idempotency_key IS NOT NULL"
								  "     AND (fanout_of IS NULL OR fanout_of OPERATOR(pg_catalog.=) id)"
								  " DO NOTHING RETURNING *",
								  15, argtypes),
					  values, nulls, SPI_OK_INSERT_RETURNING) == 0)
	{
		/* the holder of the key: committed, or ours (a new snapshot sees it) */
		Oid			holder_types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		holder_values[3] = {values[3], values[1], values[13]};
		char		holder_nulls[3] = {' ', nulls[1], ' '};

		if (run_plan(cached_plan(&plan_holder,
								 "SELECT * FROM txoutbox.messages"
								 " WHERE topic OPERATOR(pg_catalog.=) $1"
								 "   AND (tenant_id OPERATOR(pg_catalog.=) $2 OR (tenant_id IS NULL AND $2 IS NULL))"
								 "   AND idempotency_key OPERATOR(pg_catalog.=) $3"
								 "   AND (fanout_of IS NULL OR fanout_of OPERATOR(pg_catalog.=) id)",
								 3, holder_types),
					 holder_values, holder_nulls, SPI_OK_SELECT) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update"),
					 errdetail("A message with this idempotency key was enqueued by a transaction this one cannot see.")));
		existed = true;
	}
#undef INSERT_COLUMNS
#undef INSERT_VALUES
	*result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	return existed;
}

/*
 * An idempotency key came back with a message that holds it: ERROR 23505
 * unless that message has the same payload (then enqueue returns it).
 */
static void
check_same_payload(Datum holder, Datum payload, const char *key)
{
	HeapTupleHeader h = DatumGetHeapTupleHeader(holder);
	bool		isnull;
	Datum		theirs = GetAttributeByNum(h, Anum_messages_payload, &isnull);

	if (isnull || !DatumGetBool(DirectFunctionCall2(jsonb_eq, theirs, payload)))
	{
		Datum		id = GetAttributeByNum(h, Anum_messages_id, &isnull);
		Datum		topic = GetAttributeByNum(h, Anum_messages_topic, &isnull);

		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("idempotency key \"%s\" was used for another payload", key),
				 errdetail("Message %s of topic \"%s\" has that key and a different payload.",
						   DatumGetCString(DirectFunctionCall1(uuid_out, id)),
						   TextDatumGetCString(topic)),
				 errhint("An enqueue with the key and payload of a message returns that message; a new message needs a new key.")));
	}
}

/*
 * The message row (a composite datum) as the calling query expects it: a
 * call in FROM that was planned before ALTER EXTENSION UPDATE added columns
 * (it waited for the update's lock) expects the columns of then, the first
 * ones of the row.
 */
static Datum
row_as_expected(FunctionCallInfo fcinfo, Datum row)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HeapTupleHeader h = DatumGetHeapTupleHeader(row);
	TupleDesc	expected;
	Datum	   *values;
	bool	   *nulls;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) || rsinfo->expectedDesc == NULL ||
		rsinfo->expectedDesc->natts >= HeapTupleHeaderGetNatts(h))
		return row;
	/* a record of the old columns (the rowtype itself has the new ones) */
	expected = CreateTupleDescCopy(rsinfo->expectedDesc);
	expected->tdtypeid = RECORDOID;
	expected->tdtypmod = -1;
	expected = BlessTupleDesc(expected);
	values = palloc(sizeof(Datum) * expected->natts);
	nulls = palloc(sizeof(bool) * expected->natts);
	for (int i = 0; i < expected->natts; i++)
		values[i] = GetAttributeByNum(h, i + 1, &nulls[i]);
	return HeapTupleGetDatum(heap_form_tuple(expected, values, nulls));
}

/*
 * SQL: enqueue(topic, payload, message_key, headers, correlation_id,
 *				tenant_id, org_id, available_at, max_attempts,
 *				idempotency_key, expires_at)
 * Inserts a pending message in the caller's transaction and asks for the
 * dispatchers to be woken at commit.  Its topic's fan-out routes (fanout.c)
 * each get a copy of their own, and the topic's route too then, one row
 * per destination, sharing fanout_of (the first copy's id; that copy is
 * returned).  With an idempotency key, a message holding it already (its
 * first copy) is returned instead, and nothing is written.  The 0.1.0
 * function (9 arguments, until ALTER EXTENSION UPDATE) calls this too.
 */
Datum
txoutbox_enqueue(PG_FUNCTION_ARGS)
{
	Datum		row[Natts_messages];
	bool		row_nulls[Natts_messages];
	Datum		headers;
	pg_uuid_t	id;
	pg_uuid_t	head;
	int32		max_attempts = txoutbox_max_attempts;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz available_at;
	Datum		result = (Datum) 0;
	const char *bound;
	Datum		tenant = PG_ARGISNULL(5) ? (Datum) 0 : PG_GETARG_DATUM(5);
	bool		v0_2_0 = PG_NARGS() >= 11;
	char	   *key = NULL;
	bool		has_traceparent = false;
	FanoutTargets targets = {0};
	bool		fanned = false;
	int			ncopies = 1;

	txoutbox_require_preload();

	if (PG_ARGISNULL(0))
		null_argument("topic");
	check_topic(PG_GETARG_TEXT_PP(0));
	if (PG_ARGISNULL(1))
		null_argument("payload");
	if (!PG_ARGISNULL(2) && VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(2)) > TXOUTBOX_MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message_key must be at most %d bytes long", TXOUTBOX_MAX_KEY_BYTES)));
	if (!PG_ARGISNULL(3))
		has_traceparent = check_headers(PG_GETARG_JSONB_P(3));
	if (!PG_ARGISNULL(8))
	{
		max_attempts = PG_GETARG_INT32(8);
		if (max_attempts < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_attempts must be at least 1, not %d", max_attempts)));
	}
	if (v0_2_0 && !PG_ARGISNULL(9))
	{
		key = text_to_cstring(PG_GETARG_TEXT_PP(9));
		if (key[0] == '\0' || strlen(key) > TXOUTBOX_MAX_KEY_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency_key must be 1 to %d bytes long", TXOUTBOX_MAX_KEY_BYTES)));
	}
	if (v0_2_0 && !PG_ARGISNULL(10))
		(void) required_finite_time(fcinfo, 10, "expires_at");

	bound = settings_bound_tenant();
	if (bound != NULL)
	{
		if (PG_ARGISNULL(5))
			tenant = CStringGetTextDatum(bound);
		else if (strcmp(text_to_cstring(PG_GETARG_TEXT_PP(5)), bound) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to enqueue for another tenant"),
					 errdetail("This session is bound to tenant \"%s\".", bound)));
	}

	/*
	 * Available from the time of this insert, read once the transaction has
	 * its xid: a dispatcher's low-water mark (dispatch.c) is never later
	 * than that.  An explicit time in the past makes it rescan.
	 */
	if (!XactReadOnly)			/* else the insert says why it can't */
		(void) GetCurrentTransactionId();
	available_at = GetCurrentTimestamp();
	if (!PG_ARGISNULL(7))
	{
		TimestampTz given = required_finite_time(fcinfo, 7, "available_at");

		if (given < available_at)
			wakeup_rescan_at_commit();
		available_at = given;
	}

	uuidv7_generate(&id);
	head = id;
	if (PG_ARGISNULL(3))		/* NULL headers mean no headers */
		headers = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	else
		headers = PG_GETARG_DATUM(3);
	if (!has_traceparent && txoutbox_traceparent != NULL && txoutbox_traceparent[0] != '\0')
		headers = headers_with_trace_context(headers);

	/* one row per destination when fan-out routes take the topic */
	if (v0_2_0)
	{
		text	   *topic = PG_GETARG_TEXT_PP(0);

		fanned = fanout_targets(VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic), &targets);
		if (fanned)
			ncopies = targets.nroutes + (targets.topic_route ? 1 : 0);
	}

	/* the whole row, in column order */
	memset(row_nulls, true, sizeof(row_nulls));
#define SET_COLUMN(name, v, null) \
	(row[Anum_messages_##name - 1] = (v), row_nulls[Anum_messages_##name - 1] = (null))
	SET_COLUMN(tenant_id, tenant, tenant == (Datum) 0);
	SET_COLUMN(org_id, PG_GETARG_DATUM(6), PG_ARGISNULL(6));
	SET_COLUMN(topic, PG_GETARG_DATUM(0), false);
	SET_COLUMN(message_key, PG_GETARG_DATUM(2), PG_ARGISNULL(2));
	SET_COLUMN(payload, PG_GETARG_DATUM(1), false);
	SET_COLUMN(headers, headers, false);
	SET_COLUMN(correlation_id, PG_GETARG_DATUM(4), PG_ARGISNULL(4));
	SET_COLUMN(status, CStringGetTextDatum("pending"), false);
	SET_COLUMN(attempt_count, Int32GetDatum(0), false);
	SET_COLUMN(max_attempts, Int32GetDatum(max_attempts), false);
	SET_COLUMN(available_at, TimestampTzGetDatum(available_at), false);
	SET_COLUMN(created_at, TimestampTzGetDatum(now), false);
	SET_COLUMN(updated_at, TimestampTzGetDatum(now), false);
	SET_COLUMN(fanout_of, UUIDPGetDatum(&head), !fanned);
	SET_COLUMN(idempotency_key, key ? CStringGetTextDatum(key) : (Datum) 0, key == NULL);
	SET_COLUMN(expires_at, v0_2_0 ? PG_GETARG_DATUM(10) : (Datum) 0, !v0_2_0 || PG_ARGISNULL(10));

	for (int copy = 0; copy < ncopies; copy++)
	{
		/* the topic's own route first, then the fan-out routes by id */
		int			fanout_index = fanned ? copy - (targets.topic_route ? 1 : 0) : -1;
		bool		check_key = key != NULL && copy == 0;
		Datum		inserted;
		MessageInsertResult r;

		if (copy > 0)
			uuidv7_generate(&id);
		SET_COLUMN(id, UUIDPGetDatum(&id), false);
		SET_COLUMN(route_id, fanout_index >= 0 ? Int64GetDatum(targets.route_ids[fanout_index]) : (Datum) 0,
				   fanout_index < 0);

		r = message_insert(row, row_nulls, check_key, &inserted);
		if (r == MESSAGE_INSERT_NOT_FAST)
			r = insert_by_spi(row, row_nulls, check_key, &inserted) ?
				MESSAGE_INSERT_EXISTS : MESSAGE_INSERTED;
		if (r == MESSAGE_INSERT_EXISTS)
		{
			/* the key's message: returned as it is, nothing written */
			check_same_payload(inserted, PG_GETARG_DATUM(1), key);
			PG_RETURN_DATUM(row_as_expected(fcinfo, inserted));
		}
		if (copy == 0)
			result = inserted;
	}
#undef SET_COLUMN

	wakeup_at_commit();
	PG_RETURN_DATUM(row_as_expected(fcinfo, result));
}

/*
 * The last_error of a message that expired: "expired", and the error of
 * its last attempt when there was one (LAST: an SQL expression); a replayed
 * message that expires again keeps what it said the first time.
 */
#define EXPIRED_ERROR(LAST) \
	"CASE WHEN " LAST " OPERATOR(pg_catalog.^@) 'expired' THEN " LAST \
	" ELSE 'expired' OPERATOR(pg_catalog.||) coalesce(' (last error: ' OPERATOR(pg_catalog.||) " LAST \
	" OPERATOR(pg_catalog.||) ')', '') END"

/*
 * The claimable messages, oldest available_at first, locked FOR UPDATE SKIP
 * LOCKED (shared by both ways of claiming below).  $1 consumer, $2 limit,
 * $3 topic, $4 lock_until, $5 as_of, $6/$7 routed exact topics / prefixes,
 * $8 tenant, $9 the low-water mark (see ClaimRequest.scan_from), $10 only
 * these ids (or NULL), $11 the fan-out routes whose copies may be claimed,
 * $12 the routes that take runs of a key (see KEY_RUN_OK), $13 ids not to
 * give out (or NULL), $14/$15 the topic patterns of the routes and whether
 * each has room, when a route without room shares topics with a prefix
 * route that has some (RouteFilter.overlap_patterns; else NULL): a routed
 * message is given out only when its own route has room.
 * A message's route is its fan-out route when it is a copy bound to one
 * (route_id), else its topic's (fan-out routes have NULL patterns in r, so
 * _route_index passes them over).  On routes with "ordered": true, k is a
 * keyed message's predecessor: the latest older message of its key (per
 * destination: of the same route_id) that blocks it (unfinished, or failed
 * and not skipped).  A message without one is its key's head, given out
 * unless a later message of the key is processing (a replayed message
 * waits).  One with a predecessor is given out only where RUN_OK holds:
 * "false" for claim() (one message of a key at a time), or KEY_RUN_OK for
 * the dispatcher, which keeps only the runs that start at a head and have
 * every predecessor in the same claim (dispatch.c, rank_key_runs);
 * RUN_HEAD_JOIN adds what RUN_OK needs ("" for claim()).  With
 * runs, a deep key's messages qualify and the walk stops at the LIMIT,
 * instead of passing over every message behind the keys' heads.  An
 * expired lease with no attempts left (by the route's
 * "max_attempts" if it sets one) fails the message instead, and so does
 * its expiry (expires_at, or created_at + the route's "ttl_ms") once
 * passed: it is never given out after that.  CANDIDATE_COLUMNS are what the
 * CTE returns.  M_ROUTE_ID, E_ROUTE_ID and M_EXPIRES_AT stand for columns
 * of 0.2.0 (NULLs of their types for a 0.1.0 table, see outbox_claim).
 */
#define SAME_KEY(M_ROUTE_ID, E_ROUTE_ID) \
	"e.topic OPERATOR(pg_catalog.=) m.topic" \
	" AND e.message_key OPERATOR(pg_catalog.=) m.message_key" \
	" AND (" E_ROUTE_ID " OPERATOR(pg_catalog.=) " M_ROUTE_ID \
	"      OR (" E_ROUTE_ID " IS NULL AND " M_ROUTE_ID " IS NULL))"
#define KEY_BLOCKER \
	"e.status OPERATOR(pg_catalog.=) ANY (" KEY_BLOCKING ")" \
	" AND NOT (e.status OPERATOR(pg_catalog.=) 'failed' AND EXISTS" \
	"          (SELECT 1 FROM txoutbox.skipped_messages s WHERE s.id OPERATOR(pg_catalog.=) e.id))"
#define ROUTE_POSITION(M_ROUTE_ID) \
	"(CASE WHEN " M_ROUTE_ID " IS NULL THEN txoutbox._route_index(m.topic, r.patterns)" \
	"      ELSE pg_catalog.array_position(r.ids, " M_ROUTE_ID ") END)"
#define CANDIDATES_CTE(CANDIDATE_COLUMNS, M_ROUTE_ID, E_ROUTE_ID, M_EXPIRES_AT, RUN_OK, RUN_HEAD_JOIN) \
	"WITH r AS MATERIALIZED (" \
	"  SELECT pg_catalog.array_agg(id ORDER BY id) AS ids," \
	"         pg_catalog.array_agg(CASE WHEN config OPERATOR(pg_catalog.->) 'fanout'" \
	"                                        OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb" \
	"                                   THEN NULL ELSE topic_pattern END ORDER BY id) AS patterns," \
	"         pg_catalog.array_agg(config OPERATOR(pg_catalog.->) 'ordered'" \
	"                                     OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb ORDER BY id) AS ordered," \
	"         pg_catalog.array_agg(CASE WHEN pg_catalog.jsonb_typeof(config OPERATOR(pg_catalog.->) 'max_attempts')" \
	"                                        OPERATOR(pg_catalog.=) 'number'" \
	"                        THEN least(greatest((config OPERATOR(pg_catalog.->>) 'max_attempts')::numeric, 1), 1000000)::int" \
	"                   END ORDER BY id) AS max_attempts," \
	"         pg_catalog.array_agg(CASE WHEN pg_catalog.jsonb_typeof(config OPERATOR(pg_catalog.->) 'ttl_ms')" \
	"                                        OPERATOR(pg_catalog.=) 'number'" \
	"                        THEN least(greatest((config OPERATOR(pg_catalog.->>) 'ttl_ms')::numeric, 1)," \
	"                                   315360000000)::pg_catalog.float8" \
	"                   END ORDER BY id) AS ttl_ms," \
	"         coalesce(pg_catalog.bool_or(config OPERATOR(pg_catalog.->) 'ordered'" \
	"                                     OPERATOR(pg_catalog.=) 'true'::pg_catalog.jsonb), false) AS any_ordered," \
	"         coalesce(pg_catalog.bool_or(config OPERATOR(pg_catalog.?) 'max_attempts'), false) AS any_max_attempts," \
	"         coalesce(pg_catalog.bool_or(config OPERATOR(pg_catalog.?) 'ttl_ms'), false) AS any_ttl" \
	"    FROM txoutbox.routes WHERE enabled" \
	"), candidates AS MATERIALIZED (" \
	"  SELECT " CANDIDATE_COLUMNS ", m.available_at AS due, a.max_att," \
	"         (m.status OPERATOR(pg_catalog.=) 'processing'" \
	"          AND m.attempt_count OPERATOR(pg_catalog.>=) a.max_att) AS exhausted," \
	"         (coalesce(" M_EXPIRES_AT " OPERATOR(pg_catalog.<=) $5, false)" \
	"          OR (r.any_ttl AND coalesce((m.created_at OPERATOR(pg_catalog.+)" \
	"                                      (r.ttl_ms[" ROUTE_POSITION(M_ROUTE_ID) "]" \
	"                                       OPERATOR(pg_catalog.*) '1 millisecond'::pg_catalog.interval))" \
	"                                     OPERATOR(pg_catalog.<=) $5, false))) AS lapsed" \
	"    FROM r, txoutbox.messages m," \
	"         LATERAL (SELECT CASE WHEN r.any_max_attempts AND m.status OPERATOR(pg_catalog.=) 'processing'" \
	"              THEN coalesce(r.max_attempts[" ROUTE_POSITION(M_ROUTE_ID) "], m.max_attempts)" \
	"              ELSE m.max_attempts END AS max_att) a" \
	"         LEFT JOIN LATERAL (" \
	"           SELECT e.id AS key_after," \
	"                  (e.status OPERATOR(pg_catalog.=) ANY (" UNFINISHED ")" \
	"                   AND e.available_at OPERATOR(pg_catalog.<=) m.available_at) AS after_ok" \
	"             FROM txoutbox.messages e" \
	"            WHERE r.any_ordered AND m.message_key IS NOT NULL" \
	"              AND coalesce(r.ordered[" ROUTE_POSITION(M_ROUTE_ID) "], false)" \
	"              AND " SAME_KEY(M_ROUTE_ID, E_ROUTE_ID) " AND e.id OPERATOR(pg_catalog.<) m.id" \
	"              AND " KEY_BLOCKER \
	"            ORDER BY e.id DESC LIMIT 1) k ON true" \
	RUN_HEAD_JOIN \
	"   WHERE m.status OPERATOR(pg_catalog.=) ANY (" UNFINISHED ")" \
	"     AND m.available_at OPERATOR(pg_catalog.<=) $5 AND m.available_at OPERATOR(pg_catalog.>=) $9" \
	"     AND ($3::pg_catalog.text IS NULL OR m.topic OPERATOR(pg_catalog.=) $3)" \
	"     AND " ON_ROUTES(M_ROUTE_ID, "$6", "$7", "$11", "$14", "$15") \
	"     AND ($8::pg_catalog.text IS NULL OR m.tenant_id OPERATOR(pg_catalog.=) $8)" \
	"     AND ($10::pg_catalog.uuid[] IS NULL OR m.id OPERATOR(pg_catalog.=) ANY ($10))" \
	"     AND ($13::pg_catalog.uuid[] IS NULL OR NOT m.id OPERATOR(pg_catalog.=) ANY ($13))" \
	"     AND CASE WHEN k.key_after IS NOT NULL THEN " RUN_OK \
	"              WHEN NOT r.any_ordered OR m.message_key IS NULL" \
	"                   OR NOT coalesce(r.ordered[" ROUTE_POSITION(M_ROUTE_ID) "], false) THEN true" \
	"              ELSE NOT EXISTS (SELECT 1 FROM txoutbox.messages e" \
	"                                WHERE " SAME_KEY(M_ROUTE_ID, E_ROUTE_ID) \
	"                                  AND e.id OPERATOR(pg_catalog.>) m.id" \
	"                                  AND e.status OPERATOR(pg_catalog.=) 'processing'" \
	"                                  AND e.status OPERATOR(pg_catalog.=) ANY (" KEY_BLOCKING "))" \
	"         END" \
	"   ORDER BY m.available_at, m.id" \
	"   LIMIT $2" \
	"   FOR UPDATE OF m SKIP LOCKED" \
	"), expired AS (" \
	"  UPDATE txoutbox.messages m" \
	"     SET status = 'failed'," \
	"         last_error = CASE WHEN c.lapsed THEN " EXPIRED_ERROR("m.last_error") \
	"                      ELSE pg_catalog.format('lease of consumer %s expired after attempt %s of %s; no attempts left%s'," \
	"                             m.locked_by, m.attempt_count, c.max_att," \
	"                             ' (last error: ' OPERATOR(pg_catalog.||) m.last_error OPERATOR(pg_catalog.||) ')') END," \
	"         locked_by = NULL, locked_at = NULL, updated_at = $5" \
	"    FROM candidates c" \
	"   WHERE m.id OPERATOR(pg_catalog.=) c.id AND (c.exhausted OR c.lapsed)" \
	")"

/*
 * The dispatcher's RUN_OK, and RUN_HEAD_JOIN, which finds h: a keyed
 * message's head (the oldest message of its key that blocks it).  A message
 * with a predecessor is given out when its route takes runs ($12: ordered
 * routes of in-transaction publishers), and its predecessor and its head
 * are both claimable and due no later than it.  A run whose head is failed,
 * leased, or due after the messages behind it (a retry) is then not given
 * out at all, so its messages do not take the LIMIT's places round after
 * round while the head waits.  Finding h walks the key's index entries
 * from its oldest: those of finished messages cost a visit each until
 * vacuum (or a scan, once no snapshot can see them) removes them.
 */
#define KEY_RUN_OK \
	"(k.after_ok AND h.head_unfinished" \
	" AND h.head_due OPERATOR(pg_catalog.<=) m.available_at" \
	" AND r.ids[" ROUTE_POSITION("m.route_id") "] OPERATOR(pg_catalog.=) ANY ($12::pg_catalog.int8[]))"
#define KEY_HEAD_JOIN \
	"         LEFT JOIN LATERAL (" \
	"           SELECT e.status OPERATOR(pg_catalog.=) ANY (" UNFINISHED ") AS head_unfinished," \
	"                  e.available_at AS head_due" \
	"             FROM txoutbox.messages e" \
	"            WHERE r.any_ordered AND m.message_key IS NOT NULL" \
	"              AND coalesce(r.ordered[" ROUTE_POSITION("m.route_id") "], false)" \
	"              AND " SAME_KEY("m.route_id", "e.route_id") " AND " KEY_BLOCKER \
	"            ORDER BY e.id LIMIT 1) h ON true"

/* CANDIDATES_CTE for txoutbox.messages as 0.2.0 makes it */
#define CANDIDATES(CANDIDATE_COLUMNS, RUN_OK, RUN_HEAD_JOIN) \
	CANDIDATES_CTE(CANDIDATE_COLUMNS, "m.route_id", "e.route_id", "m.expires_at", RUN_OK, RUN_HEAD_JOIN)

#define CLAIM_NARGS 15

/* Fill the parameters of CANDIDATES_CTE from req. */
static void
claim_parameters(const ClaimRequest *req, Datum *values, char *nulls)
{
	memset(nulls, ' ', CLAIM_NARGS);
	values[0] = CStringGetTextDatum(req->consumer);
	values[1] = Int32GetDatum(req->max_messages);
	values[2] = req->topic ? CStringGetTextDatum(req->topic) : (Datum) 0;
	nulls[2] = req->topic ? ' ' : 'n';
	values[3] = TimestampTzGetDatum(req->lock_until);
	values[4] = TimestampTzGetDatum(req->as_of);
	values[5] = req->routes.exact;
	nulls[5] = req->routes.exact ? ' ' : 'n';
	values[6] = req->routes.prefixes;
	nulls[6] = req->routes.prefixes ? ' ' : 'n';
	values[7] = req->tenant ? CStringGetTextDatum(req->tenant) : (Datum) 0;
	nulls[7] = req->tenant ? ' ' : 'n';
	values[8] = TimestampTzGetDatum(req->scan_from);
	values[9] = req->only_ids;
	nulls[9] = req->only_ids ? ' ' : 'n';
	values[10] = req->routes.fanout_ids;
	nulls[10] = req->routes.fanout_ids ? ' ' : 'n';
	values[11] = req->run_route_ids;
	nulls[11] = req->run_route_ids ? ' ' : 'n';
	values[12] = req->except_ids;
	nulls[12] = req->except_ids ? ' ' : 'n';
	values[13] = req->routes.overlap_patterns;
	nulls[13] = req->routes.overlap_patterns ? ' ' : 'n';
	values[14] = req->routes.overlap_room;
	nulls[14] = req->routes.overlap_room ? ' ' : 'n';
}

static Oid	claim_argtypes[CLAIM_NARGS] = {TEXTOID, INT4OID, TEXTOID, TIMESTAMPTZOID,
TIMESTAMPTZOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID, UUIDARRAYOID, INT8ARRAYOID,
INT8ARRAYOID, UUIDARRAYOID, TEXTARRAYOID, BOOLARRAYOID};

/*
 * Run a claim statement with the plan it is written for: a walk of
 * messages_claim_idx in (available_at, id) order that stops at the LIMIT.
 * Left to itself, the planner picks a bitmap scan and a sort of every
 * claimable row whenever the statistics predate a burst (measured: 60 to
 * 100 ms a round instead of a few), so sorts and bitmap scans are switched
 * off while the statement is planned and run (and JIT, which their
 * penalty costs would otherwise trigger).
 */
static int
run_claim_plan(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	int			nestlevel = NewGUCNestLevel();
	int			n;

	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* the switched-off paths' costs would otherwise make it worth JIT */
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	n = run_plan(plan, values, nulls, SPI_OK_SELECT);
	AtEOXact_GUC(true, nestlevel);
	return n;
}

/* The claim of outbox_claim, after CANDIDATES_CTE (the table's columns: COLUMNS). */
#define CLAIMED(COLUMNS) \
	", claimed AS (" \
	"  UPDATE txoutbox.messages m" \
	"     SET status = 'processing', locked_by = $1, locked_at = $5," \
	"         attempt_count = m.attempt_count OPERATOR(pg_catalog.+) 1," \
	"         available_at = $4, updated_at = $5" \
	"    FROM candidates c" \
	"   WHERE m.id OPERATOR(pg_catalog.=) c.id AND NOT c.exhausted AND NOT c.lapsed" \
	"  RETURNING m.*, c.due" \
	") SELECT " COLUMNS " FROM claimed ORDER BY due, id"

/*
 * Claim up to req->max_messages messages for a lease (status processing,
 * attempt counted); the claimed rows are left in SPI_tuptable in
 * (available_at, id) order.  With columns_0_1_0 the rows have the columns
 * of 0.1.0 and the statement names no later one: for claim() on a
 * database not updated to 0.2.0 yet, or called by a statement planned
 * before the update.  Caller is connected to SPI.
 */
int
outbox_claim(const ClaimRequest *req, bool columns_0_1_0)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_0_1_0 = NULL;
	Datum		values[CLAIM_NARGS];
	char		nulls[CLAIM_NARGS];
	SPIPlanPtr	p;

	claim_parameters(req, values, nulls);
	if (columns_0_1_0)
		p = cached_plan(&plan_0_1_0,
						CANDIDATES_CTE("m.id", "NULL::pg_catalog.int8", "NULL::pg_catalog.int8",
									   "NULL::pg_catalog.timestamptz", "false", "")
						CLAIMED(MESSAGE_COLUMNS_0_1_0),
						CLAIM_NARGS, claim_argtypes);
	else
		p = cached_plan(&plan, CANDIDATES("m.id", "false", "") CLAIMED(MESSAGE_COLUMNS),
						CLAIM_NARGS, claim_argtypes);
	return run_claim_plan(p, values, nulls);
}

/*
 * Dispatcher: lock up to req->max_messages claimable messages without
 * changing them; their rows (as locked, and then key_after: the message's
 * predecessor on an ordered route, see CANDIDATES_CTE) are left in
 * SPI_tuptable in (available_at, id) order.  The caller publishes and then
 * records each outcome with one UPDATE (the *_many functions with
 * by_lock), or gives it a lease with outbox_lease_many, all in this
 * transaction.  One new row version per message instead of two.
 * heads_only: one message of a key at a time, as claim() gives them (for a
 * second look past runs that could not be kept, see dispatch_claim).
 * Caller is connected to SPI.
 */
int
outbox_lock_claimable(const ClaimRequest *req, bool heads_only)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr heads_plan = NULL;
	Datum		values[CLAIM_NARGS];
	char		nulls[CLAIM_NARGS];
	SPIPlanPtr	p;

	claim_parameters(req, values, nulls);
	if (heads_only)
		p = cached_plan(&heads_plan,
						CANDIDATES("m.*, k.key_after", "false", "")
						" SELECT " MESSAGE_COLUMNS ", key_after FROM candidates"
						"  WHERE NOT exhausted AND NOT lapsed ORDER BY due, id",
						CLAIM_NARGS, claim_argtypes);
	else
		p = cached_plan(&plan,
						CANDIDATES("m.*, k.key_after", KEY_RUN_OK, KEY_HEAD_JOIN)
						" SELECT " MESSAGE_COLUMNS ", key_after FROM candidates"
						"  WHERE NOT exhausted AND NOT lapsed ORDER BY due, id",
						CLAIM_NARGS, claim_argtypes);
	return run_claim_plan(p, values, nulls);
}

/*
 * Dispatcher: give messages locked by outbox_lock_claimable a lease (for
 * publishers that work outside the transaction).  Caller is in SPI.
 */
void
outbox_lease_many(Datum ids, const char *consumer, TimestampTz as_of, TimestampTz lock_until)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[4] = {UUIDARRAYOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[4];

	values[0] = ids;
	values[1] = CStringGetTextDatum(consumer);
	values[2] = TimestampTzGetDatum(as_of);
	values[3] = TimestampTzGetDatum(lock_until);
	cached_plan(&plan,
				"UPDATE txoutbox.messages"
				"   SET status = 'processing', locked_by = $2, locked_at = $3,"
				"       attempt_count = attempt_count OPERATOR(pg_catalog.+) 1,"
				"       available_at = $4, updated_at = $3"
				" WHERE id OPERATOR(pg_catalog.=) ANY ($1)",
				4, argtypes);
	run_plan(plan, values, NULL, SPI_OK_UPDATE);
}

/*
 * SQL: claim(consumer, max_messages, topic, lock_until, as_of)
 */
Datum
txoutbox_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ClaimRequest req;
	bool		columns_0_1_0;
	uint64		i;

	txoutbox_require_preload();

	memset(&req, 0, sizeof(req));
	req.consumer = required_text(fcinfo, 0, "consumer");
	if (req.consumer[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer must not be empty")));
	if (PG_ARGISNULL(1))
		null_argument("max_messages");
	req.max_messages = PG_GETARG_INT32(1);
	if (req.max_messages < 1 || req.max_messages > TXOUTBOX_MAX_CLAIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_messages must be between 1 and %d, not %d",
						TXOUTBOX_MAX_CLAIM, req.max_messages)));
	req.topic = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	req.tenant = settings_bound_tenant();
	req.as_of = required_finite_time(fcinfo, 4, "as_of");
	if (PG_ARGISNULL(3))
		req.lock_until = outbox_time_plus_us(req.as_of, (int64) txoutbox_lock_timeout_ms * 1000,
											 "as_of + txoutbox.lock_timeout");
	else
	{
		req.lock_until = required_finite_time(fcinfo, 3, "lock_until");
		if (req.lock_until <= req.as_of)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("lock_until must be later than as_of")));
	}

	if (req.lock_until < GetCurrentTimestamp())
		wakeup_rescan_at_commit();	/* its leases are over already */

	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	/* the rows the caller expects: 0.1.0's until the update */
	columns_0_1_0 = rsinfo->setDesc->natts == Natts_messages_0_1_0;
	/* from this session's low-water mark of every message (low_water.c) */
	req.scan_from = columns_0_1_0 ? DT_NOBEGIN :
		low_water_mark(&req.routes, req.tenant);
	outbox_claim(&req, columns_0_1_0);
	for (i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
	SPI_finish();

	return (Datum) 0;
}

/*
 * The guarded UPDATE of one message matched nothing: read the row and
 * raise the error that says why (unknown id, wrong status, lost lease).
 */
pg_noreturn static void
report_refused_transition(Datum id, const char *action, const char *required_status,
						  const char *consumer)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[1] = {UUIDOID};
	char	   *idstr = DatumGetCString(DirectFunctionCall1(uuid_out, id));
	char	   *status;
	char	   *locked_by;

	cached_plan(&plan, "SELECT status, locked_by FROM txoutbox.messages"
				" WHERE id OPERATOR(pg_catalog.=) $1",
				1, argtypes);
	if (run_plan(plan, &id, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("message %s does not exist", idstr)));

	status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	locked_by = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

	if (strcmp(status, required_status) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s message %s: its status is %s", action, idstr, status),
				 errdetail("Only a %s message can be %s.", required_status,
						   strcmp(action, "replay") == 0 ? "replayed" :
						   strcmp(action, "skip") == 0 ? "skipped" : "marked")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s message %s: its status is %s and it is held by consumer \"%s\", not \"%s\"",
					action, idstr, status, locked_by ? locked_by : "", consumer ? consumer : ""),
			 errdetail("The lease of \"%s\" ended and the message was claimed again.",
					   consumer ? consumer : "")));
}

/*
 * A session bound to a tenant may act only on that tenant's messages; any
 * other id is reported as unknown, so it learns nothing about it.  Caller is
 * connected to SPI.
 */
static void
check_tenant_access(Datum id)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[2] = {UUIDOID, TEXTOID};
	const char *bound = settings_bound_tenant();
	Datum		values[2];

	if (bound == NULL)
		return;
	values[0] = id;
	values[1] = CStringGetTextDatum(bound);
	cached_plan(&plan, "SELECT 1 FROM txoutbox.messages"
				" WHERE id OPERATOR(pg_catalog.=) $1 AND tenant_id OPERATOR(pg_catalog.=) $2",
				2, argtypes);
	if (run_plan(plan, values, NULL, SPI_OK_SELECT) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("message %s does not exist",
						DatumGetCString(DirectFunctionCall1(uuid_out, id)))));
}

/*
 * "status = 'processing'" for a statement that finds its rows by id,
 * written as a function call so that the planner cannot use
 * messages_claim_idx (whose predicate an operator would imply) instead of
 * the primary key: after a VACUUM under a snapshot held open, that index's
 * statistics can say it is empty while it holds every dead entry, and each
 * lookup then walked all of it (bench/claim_pinned.sh: mark_succeeded()
 * fell from 13k to about 130 calls a second in the round after such a
 * VACUUM).
 */
#define STATUS_IS_PROCESSING "pg_catalog.texteq(status, 'processing')"

/*
 * Run one guarded single-message transition; return the new row as a
 * composite Datum in the caller's context, or raise why it was refused.
 */
static Datum
transition_one(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			   Datum *values, const char *nulls, const char *action,
			   const char *required_status, const char *consumer)
{
	Datum		result;

	SPI_connect();
	check_tenant_access(values[0]);
	cached_plan(plan, sql, nargs, argtypes);
	if (run_plan(*plan, values, nulls, SPI_OK_UPDATE_RETURNING) == 0)
		report_refused_transition(values[0], action, required_status, consumer);
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	SPI_finish();
	return result;
}

/* SQL: mark_succeeded(id, published_at, consumer) */
Datum
txoutbox_mark_succeeded(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[3] = {UUIDOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	char	   *consumer = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));

	txoutbox_require_preload();
	if (PG_ARGISNULL(0))
		null_argument("id");
	values[0] = PG_GETARG_DATUM(0);
	values[1] = TimestampTzGetDatum(required_finite_time(fcinfo, 1, "published_at"));
	values[2] = PG_GETARG_DATUM(2);
	nulls[2] = consumer ? ' ' : 'n';

	PG_RETURN_DATUM(transition_one(&plan,
								   "UPDATE txoutbox.messages"
								   "   SET status = 'succeeded', published_at = $2, locked_by = NULL,"
								   "       locked_at = NULL, updated_at = $2"
								   " WHERE id OPERATOR(pg_catalog.=) $1"
								   "   AND " STATUS_IS_PROCESSING
								   "   AND ($3::pg_catalog.text IS NULL OR locked_by OPERATOR(pg_catalog.=) $3)"
								   " RETURNING *",
								   3, argtypes, values, nulls,
								   "mark succeeded", "processing", consumer));
}

/* SQL: mark_failed(id, reason, next_attempt_at, failed_at, consumer) */
Datum
txoutbox_mark_failed(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[5] = {UUIDOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	char	   *consumer = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));

	txoutbox_require_preload();
	if (PG_ARGISNULL(0))
		null_argument("id");
	if (PG_ARGISNULL(1))
		null_argument("reason");
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	if (PG_ARGISNULL(2))
		nulls[2] = 'n';
	else
	{
		TimestampTz next_attempt_at = required_finite_time(fcinfo, 2, "next_attempt_at");

		values[2] = TimestampTzGetDatum(next_attempt_at);
		/* the xid first, then the clock: see low_water.c */
		if (!XactReadOnly)
			(void) GetCurrentTransactionId();
		if (next_attempt_at < GetCurrentTimestamp())
			wakeup_rescan_at_commit();
	}
	values[3] = TimestampTzGetDatum(required_finite_time(fcinfo, 3, "failed_at"));
	values[4] = PG_GETARG_DATUM(4);
	nulls[4] = consumer ? ' ' : 'n';

	PG_RETURN_DATUM(transition_one(&plan,
								   "UPDATE txoutbox.messages"
								   "   SET status = CASE WHEN $3::pg_catalog.timestamptz IS NOT NULL"
								   "                      AND attempt_count OPERATOR(pg_catalog.<) max_attempts"
								   "                     THEN 'retrying' ELSE 'failed' END,"
								   "       available_at = CASE WHEN $3::pg_catalog.timestamptz IS NOT NULL"
								   "                            AND attempt_count OPERATOR(pg_catalog.<) max_attempts"
								   "                           THEN $3 ELSE available_at END,"
								   "       last_error = $2, locked_by = NULL, locked_at = NULL,"
								   "       updated_at = $4"
								   " WHERE id OPERATOR(pg_catalog.=) $1"
								   "   AND " STATUS_IS_PROCESSING
								   "   AND ($5::pg_catalog.text IS NULL OR locked_by OPERATOR(pg_catalog.=) $5)"
								   " RETURNING *",
								   5, argtypes, values, nulls,
								   "mark failed", "processing", consumer));
}

/*
 * A transition of one failed message given by id (argument 0), which wakes
 * the dispatchers at commit: replay() and skip().  A replayed message is
 * available from the start of this transaction, maybe behind the
 * dispatchers' low-water marks: they rescan.
 */
static Datum
failed_message_transition(FunctionCallInfo fcinfo, SPIPlanPtr *plan, const char *sql,
						  const char *action)
{
	static Oid	argtypes[1] = {UUIDOID};
	Datum		values[1];
	Datum		result;

	txoutbox_require_preload();
	if (PG_ARGISNULL(0))
		null_argument("id");
	values[0] = PG_GETARG_DATUM(0);
	result = transition_one(plan, sql, 1, argtypes, values, NULL, action, "failed", NULL);
	wakeup_rescan_at_commit();
	return result;
}

/* SQL: replay(id): failed back to pending, attempts reset, available now. */
Datum
txoutbox_replay(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;

	PG_RETURN_DATUM(failed_message_transition(fcinfo, &plan,
											  "WITH unskip AS (DELETE FROM txoutbox.skipped_messages"
											  "                 WHERE id OPERATOR(pg_catalog.=) $1)"
											  "UPDATE txoutbox.messages"
											  "   SET status = 'pending', attempt_count = 0,"
											  "       available_at = pg_catalog.now(),"
											  "       locked_by = NULL, locked_at = NULL, published_at = NULL,"
											  "       updated_at = pg_catalog.now()"
											  " WHERE id OPERATOR(pg_catalog.=) $1"
											  "   AND status OPERATOR(pg_catalog.=) 'failed'"
											  " RETURNING *",
											  "replay"));
}

/*
 * SQL: skip(id): a failed message stops blocking its key on an ordered
 * route (it stays failed; replay() undoes the skip).
 */
Datum
txoutbox_skip(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;

	PG_RETURN_DATUM(failed_message_transition(fcinfo, &plan,
											  "WITH skip AS (INSERT INTO txoutbox.skipped_messages (id)"
											  "  SELECT id FROM txoutbox.messages"
											  "   WHERE id OPERATOR(pg_catalog.=) $1"
											  "     AND status OPERATOR(pg_catalog.=) 'failed'"
											  "  ON CONFLICT DO NOTHING)"
											  "UPDATE txoutbox.messages SET updated_at = pg_catalog.now()"
											  " WHERE id OPERATOR(pg_catalog.=) $1"
											  "   AND status OPERATOR(pg_catalog.=) 'failed'"
											  " RETURNING *",
											  "skip"));
}

/*
 * Dispatcher: mark messages (uuid[]) succeeded.  by_lock: they were locked
 * by outbox_lock_claimable in this transaction, and this counts their
 * attempt; otherwise they must still be processing under consumer's lease
 * (those taken over are left alone).  Returns how many were marked.  Caller
 * is connected to SPI.
 */
int
outbox_mark_succeeded_many(Datum ids, const char *consumer, TimestampTz published_at,
						   bool by_lock)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[4] = {UUIDARRAYOID, TEXTOID, TIMESTAMPTZOID, BOOLOID};
	Datum		values[4];

	values[0] = ids;
	values[1] = CStringGetTextDatum(consumer);
	values[2] = TimestampTzGetDatum(published_at);
	values[3] = BoolGetDatum(by_lock);
	cached_plan(&plan,
				"UPDATE txoutbox.messages"
				"   SET status = 'succeeded', published_at = $3, locked_by = NULL,"
				"       locked_at = NULL, updated_at = $3,"
				"       attempt_count = attempt_count OPERATOR(pg_catalog.+) CASE WHEN $4 THEN 1 ELSE 0 END"
				" WHERE id OPERATOR(pg_catalog.=) ANY ($1)"
				"   AND ($4 OR (status OPERATOR(pg_catalog.=) 'processing'"
				"               AND locked_by OPERATOR(pg_catalog.=) $2))",
				4, argtypes);
	return run_plan(plan, values, NULL, SPI_OK_UPDATE);
}

/*
 * Dispatcher: record failures (parallel arrays uuid[], text[], timestamptz[],
 * int[], bool[], bool[]; a NULL next attempt fails the message at once; a
 * non-NULL max attempts is the route's, overriding the message's; not_sent:
 * the leased message was never sent, so the attempt its lease counted is
 * given back; expired: failed for its expiry, the reason (when not NULL)
 * being the last attempt's error).  by_lock as for outbox_mark_succeeded_many.  Returns how many went
 * to retrying (or back to pending); SPI_processed minus that failed.  Caller
 * is connected to SPI.
 */
int
outbox_mark_failed_many(Datum ids, Datum reasons, Datum next_attempts, Datum max_attempts,
						Datum not_sent, Datum expired, const char *consumer,
						TimestampTz failed_at, bool by_lock)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[9] = {UUIDARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	TEXTOID, TIMESTAMPTZOID, INT4ARRAYOID, INT4OID, BOOLARRAYOID, BOOLARRAYOID};
	Datum		values[9];
	uint64		i;
	int			retried = 0;

	values[0] = ids;
	values[1] = reasons;
	values[2] = next_attempts;
	values[3] = CStringGetTextDatum(consumer);
	values[4] = TimestampTzGetDatum(failed_at);
	values[5] = max_attempts;
	values[6] = Int32GetDatum(by_lock ? 1 : 0);
	values[7] = not_sent;
	values[8] = expired;
#define ATTEMPTS "(m.attempt_count OPERATOR(pg_catalog.+) $7 OPERATOR(pg_catalog.-) f.not_sent::int)"
	cached_plan(&plan,
				"UPDATE txoutbox.messages m"
				"   SET status = CASE WHEN f.next_at IS NULL"
				"                       OR " ATTEMPTS " OPERATOR(pg_catalog.>=) coalesce(f.max_attempts, m.max_attempts)"
				"                     THEN 'failed'"
				"                     WHEN " ATTEMPTS " OPERATOR(pg_catalog.=) 0 THEN 'pending' ELSE 'retrying' END,"
				"       available_at = CASE WHEN f.next_at IS NOT NULL"
				"                           AND " ATTEMPTS " OPERATOR(pg_catalog.<) coalesce(f.max_attempts, m.max_attempts)"
				"                           THEN f.next_at ELSE m.available_at END,"
				"       attempt_count = " ATTEMPTS ","
				"       last_error = CASE WHEN f.expired THEN " EXPIRED_ERROR("coalesce(f.reason, m.last_error)")
				"                         ELSE f.reason END,"
				"       locked_by = NULL, locked_at = NULL, updated_at = $5"
				"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
				"                  pg_catalog.unnest($6), pg_catalog.unnest($8), pg_catalog.unnest($9))"
				"       AS f(id, reason, next_at, max_attempts, not_sent, expired)"
				" WHERE m.id OPERATOR(pg_catalog.=) f.id"
				"   AND ($7 OPERATOR(pg_catalog.=) 1 OR (m.status OPERATOR(pg_catalog.=) 'processing'"
				"                                        AND m.locked_by OPERATOR(pg_catalog.=) $4))"
				" RETURNING m.status OPERATOR(pg_catalog.<>) 'failed'",
				9, argtypes);
#undef ATTEMPTS
	run_plan(plan, values, NULL, SPI_OK_UPDATE_RETURNING);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull)))
			retried++;
	}
	return retried;
}

/*
 * Dispatcher retention: delete up to limit succeeded messages last changed
 * before cutoff.  The id bound keeps the scan to rows created before the
 * cutoff (ids are time-ordered).  Caller is connected to SPI.
 */
int64
outbox_purge_batch(TimestampTz cutoff, int limit)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[3] = {UUIDOID, TIMESTAMPTZOID, INT4OID};
	Datum		values[3];
	pg_uuid_t	floor;

	uuidv7_floor(cutoff, &floor);
	values[0] = UUIDPGetDatum(&floor);
	values[1] = TimestampTzGetDatum(cutoff);
	values[2] = Int32GetDatum(limit);
	cached_plan(&plan,
				"DELETE FROM txoutbox.messages WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY("
				"  SELECT id FROM txoutbox.messages"
				"   WHERE id OPERATOR(pg_catalog.<) $1 AND status OPERATOR(pg_catalog.=) 'succeeded'"
				"     AND updated_at OPERATOR(pg_catalog.<) $2"
				"   ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED))",
				3, argtypes);
	return run_plan(plan, values, NULL, SPI_OK_DELETE);
}

/*
 * The earliest available_at, from "from" on, of an unfinished message the
 * dispatcher could claim (whatever its status or lock) on routes, or
 * DT_NOEND.  Caller is connected to SPI.
 */
TimestampTz
outbox_first_unfinished(TimestampTz from, const RouteFilter *routes)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[6] = {TIMESTAMPTZOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
	TEXTARRAYOID, BOOLARRAYOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	Datum		d;

	values[0] = TimestampTzGetDatum(from);
	values[1] = routes->exact;
	nulls[1] = routes->exact ? ' ' : 'n';
	values[2] = routes->prefixes;
	nulls[2] = routes->prefixes ? ' ' : 'n';
	values[3] = routes->fanout_ids;
	nulls[3] = routes->fanout_ids ? ' ' : 'n';
	values[4] = routes->overlap_patterns;
	nulls[4] = routes->overlap_patterns ? ' ' : 'n';
	values[5] = routes->overlap_room;
	nulls[5] = routes->overlap_room ? ' ' : 'n';
	cached_plan(&plan,
				"SELECT available_at FROM txoutbox.messages m"
				" WHERE m.status OPERATOR(pg_catalog.=) ANY (" UNFINISHED ")"
				"   AND m.available_at OPERATOR(pg_catalog.>=) $1"
				"   AND " ON_ROUTES("m.route_id", "$2", "$3", "$4", "$5", "$6")
				" ORDER BY m.available_at, m.id LIMIT 1",
				6, argtypes);
	if (run_claim_plan(plan, values, nulls) == 0)
		return DT_NOEND;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return DatumGetTimestampTz(d);
}

/*
 * The earliest available_at after now of an unfinished message the
 * dispatcher could claim (a delayed or retrying message, or the end of a
 * lease), or DT_NOEND.  Caller is connected to SPI.
 */
TimestampTz
outbox_next_due(const RouteFilter *routes)
{
	return outbox_first_unfinished(GetCurrentTimestamp() + 1, routes);
}

/*
 * Dispatcher: the messages still processing under consumer's leases (a
 * previous run of the same dispatcher held them when it exited): their id,
 * topic and route_id, in id order, left in SPI_tuptable.  Caller is
 * connected to SPI.
 */
int
outbox_leased_by(const char *consumer)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[1] = {TEXTOID};
	Datum		arg = CStringGetTextDatum(consumer);

	cached_plan(&plan,
				"SELECT id, topic, route_id FROM txoutbox.messages"
				" WHERE status OPERATOR(pg_catalog.=) 'processing' AND locked_by OPERATOR(pg_catalog.=) $1"
				" ORDER BY id",
				1, argtypes);
	return run_plan(plan, &arg, NULL, SPI_OK_SELECT);
}

/*
 * Dispatcher: end the leases consumer holds on ids (uuid[]) as of at,
 * noting in last_error that the attempt ended without an outcome (its
 * worker exited, or the round publishing it failed), so that they are
 * claimed again at once.  Caller is connected to SPI.
 */
void
outbox_release_leases(Datum ids, const char *consumer, TimestampTz at)
{
	static SPIPlanPtr plan = NULL;
	static Oid	argtypes[3] = {UUIDARRAYOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3];

	values[0] = ids;
	values[1] = CStringGetTextDatum(consumer);
	values[2] = TimestampTzGetDatum(at);
	cached_plan(&plan,
				"UPDATE txoutbox.messages"
				"   SET available_at = $3,"
				"       last_error = pg_catalog.format("
				"           'attempt %s by %s ended without an outcome (its worker exited or its round failed)',"
				"           attempt_count, locked_by)"
				" WHERE id OPERATOR(pg_catalog.=) ANY ($1) AND " STATUS_IS_PROCESSING
				"   AND locked_by OPERATOR(pg_catalog.=) $2",
				3, argtypes);
	run_plan(plan, values, NULL, SPI_OK_UPDATE);
}

/*
 * Delay before the attempt after attempt number `attempt`: exponential from
 * the base delay, capped by the max delay, with up to 20% jitter taken off
 * (so successive delays still grow).  base_ms / max_ms < 0 mean the
 * settings txoutbox.retry_base_delay / txoutbox.retry_max_delay.
 */
int64
retry_backoff_ms(int attempt, int64 base_ms, int64 max_ms)
{
	double		base = base_ms >= 0 ? base_ms : txoutbox_retry_base_delay_ms;
	double		cap = max_ms >= 0 ? max_ms : txoutbox_retry_max_delay_ms;
	double		d;

	cap = Max(cap, base);
	d = base * pow(2.0, Min(Max(attempt, 1) - 1, 60));
	if (d > cap)
		d = cap;
	d *= 0.8 + 0.2 * pg_prng_double(&pg_global_prng_state);
	if (d < base)
		d = base;
	return (int64) d;
}
