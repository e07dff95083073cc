/*-------------------------------------------------------------------------
 *
 * publisher.c
 *	  The registry of publishers (adding one is its own file and one line
 *	  below), and what they share: the bodies of a message (its payload,
 *	  the JSON envelope, a CloudEvent), route config accessors,
 *	  subtransactions, and outcome recording.
 *
 * CloudEvents 1.0, structured mode (JSON event format): {"specversion":
 * "1.0", "id": the message id, "source": txoutbox.cloudevents_source (by
 * default /txoutbox/<database>), "type": the topic, "subject": the message
 * key (left out when it has none), "time": created_at (RFC 3339, UTC),
 * "datacontenttype": "application/json", "traceparent" / "tracestate"
 * (the Distributed Tracing extension, when the message's headers have
 * them), "data": the payload}.  Bodies are built where no transaction may
 * be open (the network publishers), so the source is worked out when a
 * route's config is parsed (in a transaction, every round) and kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/resowner.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/json.h"
#include "utils/datetime.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "publisher.h"
#include "settings.h"
#include "trace_context.h"

static const Publisher *const publishers[] = {
	&notify_publisher,
	&http_publisher,
	&function_publisher,
	&nats_publisher,
	&amqp_publisher,
	&redis_publisher,
};

/* The publisher called name, or NULL. */
const Publisher *
publisher_lookup(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(publishers); i++)
		if (strcmp(publishers[i]->name, name) == 0)
			return publishers[i];
	return NULL;
}

/* The names of every publisher, comma-separated (for error hints). */
const char *
publisher_names(void)
{
	static char names[256];

	if (names[0] == '\0')
		for (int i = 0; i < lengthof(publishers); i++)
		{
			if (i > 0)
				strlcat(names, ", ", sizeof(names));
			strlcat(names, publishers[i]->name, sizeof(names));
		}
	return names;
}

/* Append "key": and a JSON string (or null) to buf. */
static void
append_string_field(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, ",\"%s\":", key);
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

/*
 * The envelope of SPEC.md: {"id","topic","message_key","payload","headers",
 * "correlation_id","tenant_id","org_id","attempt","created_at"}; without
 * payload, "truncated": true takes its place.
 */
void
publisher_build_envelope(StringInfo buf, const OutboxMessage *msg, bool with_payload)
{
	char		ts[MAXDATELEN + 1];

	appendStringInfo(buf, "{\"id\":\"%s\"", msg->id_str);
	append_string_field(buf, "topic", msg->topic);
	append_string_field(buf, "message_key", msg->message_key);
	if (with_payload)
	{
		appendStringInfoString(buf, ",\"payload\":");
		JsonbToCString(buf, &msg->payload->root, VARSIZE(msg->payload));
	}
	appendStringInfoString(buf, ",\"headers\":");
	JsonbToCString(buf, &msg->headers->root, VARSIZE(msg->headers));
	append_string_field(buf, "correlation_id", msg->correlation_id);
	append_string_field(buf, "tenant_id", msg->tenant_id);
	append_string_field(buf, "org_id", msg->org_id);
	appendStringInfo(buf, ",\"attempt\":%d", msg->attempt_count);
	JsonEncodeDateTime(ts, TimestampTzGetDatum(msg->created_at), TIMESTAMPTZOID, NULL);
	appendStringInfo(buf, ",\"created_at\":\"%s\"", ts);
	if (!with_payload)
		appendStringInfoString(buf, ",\"truncated\":true");
	appendStringInfoChar(buf, '}');
}

/* The CloudEvents source, as last worked out (see the file header). */
static char *cloudevents_source = NULL;

/*
 * Work out the CloudEvents source now: txoutbox.cloudevents_source, or
 * /txoutbox/<this database's name, %-escaped>.  In a transaction.
 */
static void
cloudevents_source_refresh(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (txoutbox_cloudevents_source != NULL && txoutbox_cloudevents_source[0] != '\0')
		appendStringInfoString(&buf, txoutbox_cloudevents_source);
	else
	{
		char	   *db = get_database_name(MyDatabaseId);

		appendStringInfoString(&buf, "/txoutbox/");
		for (const unsigned char *p = (const unsigned char *) (db ? db : ""); *p; p++)
		{
			if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
				(*p >= '0' && *p <= '9') || strchr("-._~", *p) != NULL)
				appendStringInfoChar(&buf, *p);
			else
				appendStringInfo(&buf, "%%%02X", *p);
		}
	}
	if (cloudevents_source == NULL || strcmp(cloudevents_source, buf.data) != 0)
	{
		if (cloudevents_source)
			pfree(cloudevents_source);
		cloudevents_source = MemoryContextStrdup(TopMemoryContext, buf.data);
	}
	pfree(buf.data);
}

/* Append ,"name":"value" for the message header called name (any case), if any. */
static void
append_header_attribute(StringInfo buf, const OutboxMessage *msg, const char *name)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	int			len = strlen(name);

	if (!JB_ROOT_IS_OBJECT(msg->headers) || JB_ROOT_IS_SCALAR(msg->headers) ||
		JB_ROOT_COUNT(msg->headers) == 0)
		return;
	it = JsonbIteratorInit(&msg->headers->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	v;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		if (k.val.string.len == len && pg_strncasecmp(k.val.string.val, name, len) == 0 &&
			tok == WJB_VALUE && v.type == jbvString)
		{
			char	   *value = pnstrdup(v.val.string.val, v.val.string.len);

			appendStringInfo(buf, ",\"%s\":", name);
			escape_json(buf, value);
			pfree(value);
			return;
		}
	}
}

/*
 * The message as a CloudEvent in structured mode (see the file header);
 * without data, "truncated": true takes its place (notify, over its size
 * limit).
 */
void
publisher_build_cloudevent(StringInfo buf, const OutboxMessage *msg, bool with_data)
{
	struct pg_tm tm;
	fsec_t		fsec;

	appendStringInfo(buf, "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":", msg->id_str);
	escape_json(buf, cloudevents_source ? cloudevents_source : "/txoutbox");
	appendStringInfoString(buf, ",\"type\":");
	escape_json(buf, msg->topic);
	if (msg->message_key)
	{
		appendStringInfoString(buf, ",\"subject\":");
		escape_json(buf, msg->message_key);
	}
	/* RFC 3339 in UTC (an offset in seconds, which old zones have, is not) */
	if (timestamp2tm(msg->created_at, NULL, &tm, &fsec, NULL, NULL) == 0)
		appendStringInfo(buf, ",\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ\"",
						 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
						 (int) fsec);
	appendStringInfoString(buf, ",\"datacontenttype\":\"application/json\"");
	append_header_attribute(buf, msg, TRACEPARENT_HEADER);
	append_header_attribute(buf, msg, TRACESTATE_HEADER);
	if (with_data)
	{
		appendStringInfoString(buf, ",\"data\":");
		JsonbToCString(buf, &msg->payload->root, VARSIZE(msg->payload));
	}
	else
		appendStringInfoString(buf, ",\"truncated\":true");
	appendStringInfoChar(buf, '}');
}

/* The body of a message as the route's "body" says. */
void
publisher_build_body(StringInfo buf, const OutboxMessage *msg, PublishBody body)
{
	if (body == PUBLISH_BODY_ENVELOPE)
		publisher_build_envelope(buf, msg, true);
	else if (body == PUBLISH_BODY_CLOUDEVENTS)
		publisher_build_cloudevent(buf, msg, true);
	else
		JsonbToCString(buf, &msg->payload->root, VARSIZE(msg->payload));
}

/*
 * The route config's "body": "payload" (the default), "envelope" or
 * "cloudevents".  In a transaction (see the file header).
 */
PublishBody
publisher_config_body(Jsonb *config, const char *publisher)
{
	char	   *body = jsonb_config_string(config, "body");

	if (body == NULL || strcmp(body, "payload") == 0)
		return PUBLISH_BODY_PAYLOAD;
	if (strcmp(body, "envelope") == 0)
		return PUBLISH_BODY_ENVELOPE;
	if (strcmp(body, "cloudevents") == 0)
	{
		cloudevents_source_refresh();
		return PUBLISH_BODY_CLOUDEVENTS;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("route config field \"body\" of a %s route must be \"payload\", \"envelope\" or \"cloudevents\"", publisher)));
}

/* The media type of a body: CloudEvents' for cloudevents, else JSON. */
const char *
publisher_body_content_type(PublishBody body)
{
	return body == PUBLISH_BODY_CLOUDEVENTS ? CLOUDEVENTS_CONTENT_TYPE : "application/json";
}

/* The placeholders a name in a route's config may use. */
static const char *const placeholders[] = {"{topic}", "{message_key}", "{tenant_id}", NULL};

/*
 * ERROR unless every "{...}" in template (the route config's field) is one
 * of the placeholders.
 */
void
publisher_check_placeholders(const char *template, const char *field, const char *publisher)
{
	const char *p = template;

	while ((p = strchr(p, '{')) != NULL)
	{
		const char *const *ph;
		bool		known = false;

		for (ph = placeholders; *ph; ph++)
			if (strncmp(p, *ph, strlen(*ph)) == 0)
				known = true;
		if (!known)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown placeholder in \"%s\" of a %s route", field, publisher),
					 errhint("Use {topic}, {message_key} or {tenant_id}.")));
		p++;
	}
}

/*
 * template with {topic}, {message_key} and {tenant_id} replaced by the
 * message's (a null key or tenant becomes the empty string).
 */
char *
publisher_expand_placeholders(const char *template, const OutboxMessage *msg)
{
	StringInfoData buf;
	const char *p = template;

	initStringInfo(&buf);
	while (*p)
	{
		if (strncmp(p, "{topic}", 7) == 0)
		{
			appendStringInfoString(&buf, msg->topic);
			p += 7;
		}
		else if (strncmp(p, "{message_key}", 13) == 0)
		{
			if (msg->message_key)
				appendStringInfoString(&buf, msg->message_key);
			p += 13;
		}
		else if (strncmp(p, "{tenant_id}", 11) == 0)
		{
			if (msg->tenant_id)
				appendStringInfoString(&buf, msg->tenant_id);
			p += 11;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

/* Keys of the delivery policy, allowed in every route's config (routes.c). */
static const char *const policy_keys[] = {
	"ordered", "max_attempts", "retry_base_delay_ms", "retry_max_delay_ms",
	"rate_limit", "ttl_ms", "fanout",
	"breaker_failures", "breaker_cooldown_ms", "breaker_max_cooldown_ms", NULL
};

/* Is key (of len bytes) one of the NULL-ended list? */
static bool
key_in(const char *const *list, const char *key, int len)
{
	for (; *list; list++)
		if (strlen(*list) == (size_t) len && strncmp(*list, key, len) == 0)
			return true;
	return false;
}

/*
 * Route config must be an object whose keys are all in allowed (NULL-ended)
 * or are delivery-policy keys.
 */
void
jsonb_config_check_keys(Jsonb *config, const char *publisher, const char *const *allowed)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(config) || JB_ROOT_IS_SCALAR(config))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("config of a %s route must be a JSON object", publisher)));

	it = JsonbIteratorInit(&config->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		if (!key_in(allowed, v.val.string.val, v.val.string.len) &&
			!key_in(policy_keys, v.val.string.val, v.val.string.len))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown field \"%.*s\" in config of a %s route",
							v.val.string.len, v.val.string.val, publisher)));
	}
}

/* The string at key, or NULL when absent; ERROR when not a string. */
char *
jsonb_config_string(Jsonb *config, const char *key)
{
	JsonbValue	v;

	if (!getKeyJsonValueFromContainer(&config->root, key, strlen(key), &v) ||
		v.type == jbvNull)
		return NULL;
	if (v.type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("route config field \"%s\" must be a string", key)));
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/* The integer at key into *value; false when absent; ERROR when not one. */
bool
jsonb_config_int(Jsonb *config, const char *key, int64 *value)
{
	JsonbValue	v;

	if (!getKeyJsonValueFromContainer(&config->root, key, strlen(key), &v) ||
		v.type == jbvNull)
		return false;
	if (v.type != jbvNumeric || strchr(numeric_normalize(v.val.numeric), '.') != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("route config field \"%s\" must be an integer", key)));
	*value = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
	return true;
}

/* The boolean at key into *value; false when absent; ERROR when not one. */
bool
jsonb_config_bool(Jsonb *config, const char *key, bool *value)
{
	JsonbValue	v;

	if (!getKeyJsonValueFromContainer(&config->root, key, strlen(key), &v) ||
		v.type == jbvNull)
		return false;
	if (v.type != jbvBool)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("route config field \"%s\" must be true or false", key)));
	*value = v.val.boolean;
	return true;
}

/*
 * The route config's "headers": a JSON object of strings (else ERROR 22023),
 * as parallel arrays of names and values in the current memory context;
 * returns how many (0 when absent).  Each publisher checks the names and
 * values against its protocol's rules.
 */
int
jsonb_config_headers(Jsonb *config, char ***names, char ***values)
{
	JsonbValue	v;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	int			cap = 8;
	int			n = 0;

	*names = NULL;
	*values = NULL;
	if (!getKeyJsonValueFromContainer(&config->root, "headers", 7, &v) || v.type == jbvNull)
		return 0;
	if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("route config field \"headers\" must be a JSON object of strings")));

	*names = palloc(sizeof(char *) * cap);
	*values = palloc(sizeof(char *) * cap);
	it = JsonbIteratorInit(v.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	val;
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(k.val.string.val, k.val.string.len);
		tok = JsonbIteratorNext(&it, &val, true);
		if (tok != WJB_VALUE || val.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("route config field \"headers\" must be a JSON object of strings"),
					 errdetail("The value of header \"%s\" is not a string.", name)));
		if (n == cap)
		{
			cap *= 2;
			*names = repalloc(*names, sizeof(char *) * cap);
			*values = repalloc(*values, sizeof(char *) * cap);
		}
		(*names)[n] = name;
		(*values)[n] = pnstrdup(val.val.string.val, val.val.string.len);
		n++;
	}
	return n;
}

/* Record an item's outcome and its error text (not for success). */
void
publisher_set_outcome(PublishItem *item, PublishOutcome outcome, const char *fmt,...)
{
	item->outcome = outcome;
	item->error = NULL;
	item->expired = false;
	if (fmt)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		for (;;)
		{
			va_list		args;
			int			needed;

			va_start(args, fmt);
			needed = appendStringInfoVA(&buf, fmt, args);
			va_end(args);
			if (needed == 0)
				break;
			enlargeStringInfo(&buf, needed);
		}
		item->error = buf.data;
	}
}

/* The item is not published: its expiry passed (failed, "expired"). */
void
publisher_set_expired(PublishItem *item)
{
	item->outcome = PUBLISH_FAILED;
	item->error = NULL;
	item->expired = true;
}

/*
 * Run fn(arg) in a subtransaction of the current transaction.  Returns true
 * when it returned; false when it raised, with the error message (in the
 * caller's memory context) in *error and the subtransaction rolled back.
 * A query cancel (statement_timeout, pg_cancel_backend) is thrown on after
 * the rollback, since it ends the caller's statement and is not a failure
 * of one message, unless own_cancel is given and says it was the caller's
 * own timeout (asked after the rollback).
 */
bool
try_in_subtransaction(void (*fn) (void *arg), void *arg, char **error,
					  bool (*own_cancel) (void))
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
			(own_cancel == NULL || !own_cancel()))
			ReThrowError(edata);
		*error = pstrdup(edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}
