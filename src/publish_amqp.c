/*-------------------------------------------------------------------------
 *
 * publish_amqp.c
 *	  The amqp publisher: RabbitMQ (AMQP 0-9-1) with publisher confirms.
 *	  This file is the Publisher: a route's config {"url", "exchange",
 *	  "routing_key", "persistent", "mandatory", "timeout_ms", "body",
 *	  "headers", "max_in_flight"}, checked when the route is added and
 *	  parsed every round; the message built for a route (properties,
 *	  headers table, body); and capacity.  amqp_transport.c sends it.
 *
 * A message is published to "exchange" (the empty string is the default
 * exchange) with "routing_key" (default "{topic}"); both may use the
 * placeholders {topic}, {message_key} and {tenant_id}.  Properties:
 * message_id (the message id, the same on every attempt), correlation_id,
 * content_type application/json, type (the topic), timestamp (when the
 * message was enqueued, in seconds), app_id "txoutbox", delivery mode 2
 * (persistent) unless "persistent": false.  Headers table: txoutbox-topic,
 * txoutbox-attempt, txoutbox-key (when the message has a key), then the
 * route's "headers", then the message's headers (a message's header wins
 * over a route's of the same name; neither may set a txoutbox-* one).
 *
 * What cannot be published and never will be (a name longer than an AMQP
 * short string after expansion, a reserved header name in the message)
 * fails the message at once; errors name the field, never a secret.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "publisher.h"

#ifdef TXOUTBOX_WITH_AMQP

#include "amqp.h"

static const char *const amqp_keys[] = {
	"url", "exchange", "routing_key", "persistent", "mandatory", "timeout_ms",
	"body", "headers", "max_in_flight", NULL
};

/* Headers txoutbox sets itself (compared case-insensitively). */
static const char *const reserved_headers[] = {
	"txoutbox-topic", "txoutbox-attempt", "txoutbox-key", NULL
};

/* Is name one of the headers txoutbox sets? */
static bool
header_is_reserved(const char *name)
{
	const char *const *r;

	for (r = reserved_headers; *r; r++)
		if (pg_strcasecmp(*r, name) == 0)
			return true;
	return false;
}

/* Parse and check the url into ar: amqp://[user[:password]@]host[:port][/vhost]. */
static void
parse_url(AmqpRoute *ar, const char *url)
{
	struct amqp_connection_info info;
	char	   *copy = pstrdup(url);

	if (pg_strncasecmp(url, "amqps://", 8) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url scheme \"amqps\" is not supported in an amqp route"),
				 errdetail("txoutbox connects to RabbitMQ without TLS; use an amqp:// url.")));
	if (strncmp(url, "amqp://", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url of an amqp route must start with \"amqp://\""),
				 errhint("Give a url such as \"amqp://user:password@host:5672/vhost\".")));
	if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid url in config of an amqp route"),
				 errdetail("The url must be amqp://[user[:password]@]host[:port][/vhost], "
						   "percent-encoded, without a query."),
				 errhint("Give a url such as \"amqp://user:password@host:5672/vhost\".")));
	if (info.host == NULL || info.host[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url of an amqp route has no host")));
	if (info.port < 1 || info.port > 65535)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("port of an amqp route must be between 1 and 65535")));
	/* "amqp://host/" names the empty vhost, which RabbitMQ never has: "/" */
	if (info.vhost[0] == '\0')
		info.vhost = "/";
	if (strlen(info.vhost) > AMQP_SHORTSTR_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("vhost of an amqp route is longer than %d bytes", AMQP_SHORTSTR_MAX)));
	ar->url = pstrdup(url);
	ar->shown_url = netpub_url_without_password(url);
	ar->host = pstrdup(info.host);
	ar->port = info.port;
	ar->vhost = pstrdup(info.vhost);
	ar->user = pstrdup(info.user);
	ar->password = pstrdup(info.password);
	pfree(copy);
}

/*
 * ERROR unless a name template (exchange or routing key) uses only known
 * placeholders, has no control characters and fits a short string.
 */
static void
check_name_template(const char *template, const char *field)
{
	const unsigned char *p;

	publisher_check_placeholders(template, field, "amqp");
	for (p = (const unsigned char *) template; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" of an amqp route contains a control character", field)));
	if (strlen(template) > AMQP_SHORTSTR_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" of an amqp route is longer than %d bytes", field, AMQP_SHORTSTR_MAX)));
}

/* Parse the "headers" object into ar->header_names/values. */
static void
parse_headers(AmqpRoute *ar, Jsonb *config)
{
	int			i;

	ar->nheaders = jsonb_config_headers(config, &ar->header_names, &ar->header_values);
	for (i = 0; i < ar->nheaders; i++)
	{
		const char *name = ar->header_names[i];

		if (name[0] == '\0' || strlen(name) > AMQP_SHORTSTR_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header names of an amqp route must be 1 to %d bytes", AMQP_SHORTSTR_MAX)));
		if (header_is_reserved(name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" cannot be set by an amqp route", name),
					 errdetail("txoutbox sets it itself.")));
	}
}

/* An integer field between lo and hi, or dflt when absent. */
static int
config_int(Jsonb *config, const char *key, int lo, int hi, int dflt)
{
	int64		value;

	if (!jsonb_config_int(config, key, &value))
		return dflt;
	if (value < lo || value > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s of an amqp route must be between %d and %d, not " INT64_FORMAT,
						key, lo, hi, value)));
	return (int) value;
}

/* Publisher.parse_config: check an amqp route's config and return its AmqpRoute. */
void *
amqp_parse_config(Jsonb *config)
{
	AmqpRoute  *ar = palloc0(sizeof(AmqpRoute));
	char	   *url;
	char	   *exchange;
	char	   *routing_key;

	jsonb_config_check_keys(config, "amqp", amqp_keys);

	url = jsonb_config_string(config, "url");
	if (url == NULL || url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an amqp route needs \"url\" in its config"),
				 errhint("Give a url such as \"amqp://user:password@host:5672/vhost\".")));
	parse_url(ar, url);

	exchange = jsonb_config_string(config, "exchange");
	if (exchange == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an amqp route needs \"exchange\" in its config"),
				 errhint("Name an exchange that exists, or \"\" for the default exchange.")));
	check_name_template(exchange, "exchange");
	ar->exchange = exchange;

	routing_key = jsonb_config_string(config, "routing_key");
	if (routing_key == NULL)
		routing_key = pstrdup("{topic}");
	check_name_template(routing_key, "routing_key");
	ar->routing_key = routing_key;

	ar->persistent = true;
	(void) jsonb_config_bool(config, "persistent", &ar->persistent);
	ar->mandatory = true;
	(void) jsonb_config_bool(config, "mandatory", &ar->mandatory);
	ar->timeout_ms = config_int(config, "timeout_ms", 1, AMQP_MAX_TIMEOUT_MS,
								AMQP_DEFAULT_TIMEOUT_MS);
	ar->max_in_flight = config_int(config, "max_in_flight", 1, AMQP_MAX_MAX_IN_FLIGHT,
								   AMQP_DEFAULT_MAX_IN_FLIGHT);
	parse_headers(ar, config);
	ar->body = publisher_config_body(config, "amqp");
	return ar;
}

/* ---- the message --------------------------------------------------------- */

typedef struct HeaderTable
{
	int			n;
	int			cap;
	amqp_table_entry_t *entries;
} HeaderTable;

/* Add (or, by exact name, replace) a string header. */
static void
table_set_string(HeaderTable *t, const char *name, const char *value)
{
	int			i;

	for (i = 0; i < t->n; i++)
		if (t->entries[i].key.len == strlen(name) &&
			memcmp(t->entries[i].key.bytes, name, t->entries[i].key.len) == 0)
			break;
	if (i == t->n)
	{
		if (t->n == t->cap)
		{
			t->cap = t->cap ? t->cap * 2 : 16;
			t->entries = t->entries ? repalloc(t->entries, sizeof(amqp_table_entry_t) * t->cap) :
				palloc(sizeof(amqp_table_entry_t) * t->cap);
		}
		t->n++;
	}
	t->entries[i].key = amqp_cstring_bytes(name);
	t->entries[i].value.kind = AMQP_FIELD_KIND_UTF8;
	t->entries[i].value.value.bytes = amqp_cstring_bytes(value);
}

/*
 * Add the message's headers to t.  Returns NULL, or why the message cannot
 * be published (a permanent problem: retrying would not help).
 */
static char *
add_message_headers(HeaderTable *t, const OutboxMessage *msg)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(msg->headers) || JB_ROOT_IS_SCALAR(msg->headers))
		return NULL;
	it = JsonbIteratorInit(&msg->headers->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	val;
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(k.val.string.val, k.val.string.len);
		tok = JsonbIteratorNext(&it, &val, true);
		if (tok != WJB_VALUE || val.type != jbvString)
			return psprintf("message header \"%s\" is not a string", name);
		if (name[0] == '\0' || strlen(name) > AMQP_SHORTSTR_MAX)
			return psprintf("a message header name is longer than %d bytes", AMQP_SHORTSTR_MAX);
		if (header_is_reserved(name))
			return psprintf("message header \"%s\" cannot be set by a message", name);
		table_set_string(t, name, pnstrdup(val.val.string.val, val.val.string.len));
	}
	return NULL;
}

/* The encoded size of a short string property (1 length byte + bytes). */
#define SHORTSTR_LEN(b)		(1 + (b).len)

/* The encoded size of r's properties (what the content header frame holds). */
static size_t
properties_len(const amqp_basic_properties_t *p)
{
	size_t		len = 2;		/* the property flags */
	int			i;

	len += SHORTSTR_LEN(p->content_type);
	len += 1;					/* delivery mode */
	len += SHORTSTR_LEN(p->message_id);
	if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
		len += SHORTSTR_LEN(p->correlation_id);
	len += SHORTSTR_LEN(p->type);
	len += 8;					/* timestamp */
	len += SHORTSTR_LEN(p->app_id);
	len += 4;					/* the table's length */
	for (i = 0; i < p->headers.num_entries; i++)
	{
		const amqp_table_entry_t *e = &p->headers.entries[i];

		len += 1 + e->key.len + 1;
		len += e->value.kind == AMQP_FIELD_KIND_UTF8 ? 4 + e->value.value.bytes.len : 4;
	}
	return len;
}

/*
 * Expand a name template for msg into *out; false when the result does not
 * fit an AMQP short string.
 */
static bool
expand_name(const char *template, const OutboxMessage *msg, char **out)
{
	*out = publisher_expand_placeholders(template, msg);
	return strlen(*out) <= AMQP_SHORTSTR_MAX;
}

/*
 * NetTransport.prepare: build req's publish from item, in the current
 * memory context (the request's).  Returns false, with the outcome set on
 * req, when the message cannot be published.
 */
bool
amqp_request_prepare(NetRequest *req, const PublishItem *item)
{
	AmqpRequest *r = (AmqpRequest *) req;
	const OutboxMessage *msg = item->msg;
	const AmqpRoute *ar = (const AmqpRoute *) item->route->parsed;
	amqp_basic_properties_t *p = &r->props;
	HeaderTable h = {0};
	StringInfoData body;
	char	   *problem;
	int			i;

	if (!expand_name(ar->exchange, msg, &r->exchange))
	{
		publisher_set_outcome(&req->item, PUBLISH_FAILED,
							  "the exchange name is longer than %d bytes after placeholder expansion",
							  AMQP_SHORTSTR_MAX);
		return false;
	}
	if (!expand_name(ar->routing_key, msg, &r->routing_key))
	{
		publisher_set_outcome(&req->item, PUBLISH_FAILED,
							  "the routing key is longer than %d bytes after placeholder expansion",
							  AMQP_SHORTSTR_MAX);
		return false;
	}
	if (strlen(msg->topic) > AMQP_SHORTSTR_MAX)
	{
		publisher_set_outcome(&req->item, PUBLISH_FAILED,
							  "the topic is longer than %d bytes: it cannot be the AMQP type property",
							  AMQP_SHORTSTR_MAX);
		return false;
	}
	if (msg->correlation_id && strlen(msg->correlation_id) > AMQP_SHORTSTR_MAX)
	{
		publisher_set_outcome(&req->item, PUBLISH_FAILED,
							  "the correlation_id is longer than %d bytes (an AMQP short string)",
							  AMQP_SHORTSTR_MAX);
		return false;
	}

	/* txoutbox's headers, the route's, the message's */
	table_set_string(&h, "txoutbox-topic", pstrdup(msg->topic));
	if (h.n == h.cap)
	{
		h.cap *= 2;
		h.entries = repalloc(h.entries, sizeof(amqp_table_entry_t) * h.cap);
	}
	h.entries[h.n].key = amqp_cstring_bytes("txoutbox-attempt");
	h.entries[h.n].value.kind = AMQP_FIELD_KIND_I32;
	h.entries[h.n].value.value.i32 = msg->attempt_count;
	h.n++;
	if (msg->message_key)
		table_set_string(&h, "txoutbox-key", pstrdup(msg->message_key));
	for (i = 0; i < ar->nheaders; i++)
		table_set_string(&h, pstrdup(ar->header_names[i]), pstrdup(ar->header_values[i]));
	problem = add_message_headers(&h, msg);
	if (problem)
	{
		publisher_set_outcome(&req->item, PUBLISH_FAILED, "%s", problem);
		return false;
	}

	memset(p, 0, sizeof(*p));
	p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
		AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
		AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
	p->content_type = amqp_cstring_bytes("application/json");
	p->delivery_mode = ar->persistent ? AMQP_DELIVERY_PERSISTENT : AMQP_DELIVERY_NONPERSISTENT;
	p->message_id = amqp_cstring_bytes(pstrdup(msg->id_str));
	if (msg->correlation_id)
	{
		p->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
		p->correlation_id = amqp_cstring_bytes(pstrdup(msg->correlation_id));
	}
	p->type = amqp_cstring_bytes(pstrdup(msg->topic));
	p->timestamp = (uint64_t) Max(timestamptz_to_time_t(msg->created_at), 0);
	p->app_id = amqp_cstring_bytes("txoutbox");
	p->headers.num_entries = h.n;
	p->headers.entries = h.entries;
	r->headers = h.entries;
	r->props_len = properties_len(p);

	initStringInfo(&body);
	publisher_build_body(&body, msg, ar->body);
	r->body = body.data;
	r->body_len = body.len;

	r->mandatory = ar->mandatory;
	r->cfg_timeout_ms = ar->timeout_ms;
	/* method frame, content header frame, body frame(s), about */
	r->wire_len = 64 + strlen(r->exchange) + strlen(r->routing_key) + r->props_len + r->body_len;
	r->route_id = item->route->id;
	r->conn = amqp_connection_for(ar);	/* last: the request holds it from now */
	return true;
}

/* Most messages of a route unconfirmed at once: its "max_in_flight". */
static int
amqp_route_limit(const OutboxRoute *route)
{
	return ((const AmqpRoute *) route->parsed)->max_in_flight;
}

/* Publisher.publish: hand the messages to the network machinery. */
static void
amqp_publish(PublishItem *items, int n)
{
	netpub_publish(&amqp_transport, items, n, amqp_route_limit);
}

/* Publisher.capacity (see amqp_route_capacity in amqp_transport.c). */
static int
amqp_capacity(const OutboxRoute *route)
{
	return amqp_route_capacity(route, (const AmqpRoute *) route->parsed);
}

#endif							/* TXOUTBOX_WITH_AMQP */

const Publisher amqp_publisher = {
	.name = "amqp",
	.kind = PUBLISHER_NETWORK,
#ifdef TXOUTBOX_WITH_AMQP
	.parse_config = amqp_parse_config,
	.publish = amqp_publish,
	.capacity = amqp_capacity,
#else
	.unavailable = "txoutbox was built without librabbitmq (Debian package librabbitmq-dev)",
#endif
};
