/*-------------------------------------------------------------------------
 *
 * publish_redis.c
 *	  The redis publisher: each message is an XADD to a Redis stream, sent
 *	  over a pipelined connection by redis_transport.c.  This file parses a
 *	  route's config, builds a message's XADD, and makes them a Publisher.
 *
 * Config: {"url": "redis://[[user]:password@]host[:port][/db]",
 * "stream": "{topic}", "maxlen": n, "timeout_ms": 5000, "body": "payload",
 * "headers": {...}, "max_in_flight": 1000}.  Errors about the url never
 * echo it (it may hold a password).
 *
 * The command:
 *	 XADD <stream> [MAXLEN ~ <maxlen>] * id <uuid> topic <topic> [key <key>]
 *		  payload <body> headers <json> attempt <n> [correlation_id <id>]
 * A stream field cannot be null: key and correlation_id are left out when
 * the message has none.  headers is a JSON object: the route's headers,
 * then the message's (which win over the route's of the same name).
 *
 * Capacity: up to 32 times max_in_flight, none while max_in_flight are
 * waiting or running; nothing while the route's connection waits out its
 * reconnect backoff (the messages stay in the table, untouched), and only a
 * few (as for a max_in_flight of 1) while it is being tried again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "publisher.h"

#ifdef TXOUTBOX_WITH_REDIS

#include <ctype.h>

#include "utils/json.h"

#include "netpub.h"
#include "pg_compat.h"
#include "redis.h"

static const char *const redis_keys[] = {
	"url", "stream", "maxlen", "timeout_ms", "body", "headers", "max_in_flight", NULL
};

/* ERROR about the url (never showing it: it may hold a password). */
pg_noreturn static void
bad_url(const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid url in config of a redis route: %s", problem),
			 errhint("Give a url such as \"redis://127.0.0.1:6379/0\" or "
					 "\"redis://user:password@host:6379/0\".")));
}

/* The value of hex digit c, or -1. */
static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* s[0..len-1] with its %XX escapes decoded; what names the part for errors. */
static char *
percent_decode(const char *s, size_t len, const char *what)
{
	char	   *out = palloc(len + 1);
	size_t		i,
				n = 0;

	for (i = 0; i < len; i++)
	{
		int			hi,
					lo;

		if (s[i] != '%')
		{
			out[n++] = s[i];
			continue;
		}
		hi = i + 1 < len ? hex_value(s[i + 1]) : -1;
		lo = i + 2 < len ? hex_value(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			bad_url(psprintf("the %s has a bad %%-escape", what));
		out[n++] = (char) (hi * 16 + lo);
		i += 2;
	}
	out[n] = '\0';
	return out;
}

/* A decimal number in s[0..len-1] between min and max, or -1. */
static int64
parse_decimal(const char *s, size_t len, int64 min, int64 max)
{
	int64		v = 0;
	size_t		i;

	if (len == 0 || len > 18)
		return -1;
	for (i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return (v < min || v > max) ? -1 : v;
}

/*
 * Parse "redis://[[user]:password@]host[:port][/db]" into server.  The
 * user and password may be %-escaped; a host may be an IPv6 address in
 * brackets.
 */
static void
parse_url(const char *url, RedisServer *server)
{
	const char *p;
	const char *authority;
	const char *end;
	const char *at = NULL;
	const char *hostpart;
	const char *hostend;
	const char *portpart = NULL;

	if (pg_strncasecmp(url, "rediss://", 9) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("redis over TLS (rediss://) is not supported"),
				 errhint("Use a redis:// url to a server on a trusted network, or a TLS tunnel.")));
	if (pg_strncasecmp(url, "redis://", 8) != 0)
		bad_url("it must start with \"redis://\"");
	authority = url + 8;
	end = authority + strcspn(authority, "/?#");
	if (strpbrk(url, "?#") != NULL)
		bad_url("query parameters and fragments are not supported");
	for (p = authority; p < end; p++)
		if (*p == '@')
			at = p;

	memset(server, 0, sizeof(*server));
	if (at != NULL)
	{
		const char *colon = memchr(authority, ':', at - authority);

		if (colon == NULL)
			bad_url("a user needs a password (\"redis://user:password@host\", or \"redis://:password@host\" for the default user)");
		if (colon > authority)
			server->user = percent_decode(authority, colon - authority, "user");
		server->password = percent_decode(colon + 1, at - colon - 1, "password");
		if (server->password[0] == '\0')
			bad_url("the password is empty");
		hostpart = at + 1;
	}
	else
		hostpart = authority;

	/* host, [v6], then :port */
	if (hostpart < end && *hostpart == '[')
	{
		const char *close = memchr(hostpart, ']', end - hostpart);

		if (close == NULL)
			bad_url("an IPv6 address lacks its closing \"]\"");
		server->host = pnstrdup(hostpart + 1, close - hostpart - 1);
		hostend = close + 1;
		if (hostend < end && *hostend != ':')
			bad_url("unexpected characters after the IPv6 address");
	}
	else
	{
		hostend = memchr(hostpart, ':', end - hostpart);
		if (hostend == NULL)
			hostend = end;
		server->host = pnstrdup(hostpart, hostend - hostpart);
	}
	if (server->host[0] == '\0')
		bad_url("it has no host");
	for (p = server->host; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '.' || *p == '-' || *p == '_' || *p == ':'))
			bad_url("the host is not a host name or an IP address");
	if (hostend < end && *hostend == ':')
		portpart = hostend + 1;
	server->port = REDIS_DEFAULT_PORT;
	if (portpart != NULL)
	{
		int64		port = parse_decimal(portpart, end - portpart, 1, 65535);

		if (port < 0)
			bad_url("the port must be a number between 1 and 65535");
		server->port = (int) port;
	}

	/* /db */
	server->db = 0;
	if (*end == '/' && end[1] != '\0')
	{
		int64		db = parse_decimal(end + 1, strlen(end + 1), 0, PG_INT32_MAX);

		if (db < 0)
			bad_url("the path must be a database number (\"/0\")");
		server->db = (int) db;
	}
	server->shown = netpub_url_without_password(url);
}

/* Parse the "headers" object into route->header_names and header_members. */
static void
parse_headers(RedisRoute *route, Jsonb *config)
{
	char	  **values;
	int			i;

	route->nheaders = jsonb_config_headers(config, &route->header_names, &values);
	route->header_members = palloc(sizeof(char *) * Max(route->nheaders, 1));
	for (i = 0; i < route->nheaders; i++)
	{
		StringInfoData member;

		initStringInfo(&member);
		escape_json(&member, route->header_names[i]);
		appendStringInfoChar(&member, ':');
		escape_json(&member, values[i]);
		route->header_members[i] = member.data;
	}
}

/* Check a redis route's config and return its RedisRoute. */
void *
redis_parse_config(Jsonb *config)
{
	RedisRoute *route = palloc0(sizeof(RedisRoute));
	char	   *url;
	char	   *stream;
	int64		n;

	jsonb_config_check_keys(config, "redis", redis_keys);

	url = jsonb_config_string(config, "url");
	if (url == NULL || url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a redis route needs \"url\" in its config"),
				 errhint("Give a url such as \"redis://127.0.0.1:6379/0\".")));
	parse_url(url, &route->server);

	stream = jsonb_config_string(config, "stream");
	if (stream == NULL)
		stream = pstrdup("{topic}");
	if (stream[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("route config field \"stream\" of a redis route must not be empty")));
	publisher_check_placeholders(stream, "stream", "redis");
	route->stream = stream;

	if (jsonb_config_int(config, "maxlen", &n))
	{
		if (n < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("maxlen of a redis route must be at least 1, not " INT64_FORMAT, n),
					 errhint("Leave maxlen out for a stream that is not trimmed.")));
		route->maxlen = n;
	}

	route->timeout_ms = REDIS_DEFAULT_TIMEOUT_MS;
	if (jsonb_config_int(config, "timeout_ms", &n))
	{
		if (n < 1 || n > REDIS_MAX_TIMEOUT_MS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout_ms of a redis route must be between 1 and %d, not " INT64_FORMAT,
							REDIS_MAX_TIMEOUT_MS, n)));
		route->timeout_ms = (int) n;
	}

	route->max_in_flight = REDIS_DEFAULT_MAX_IN_FLIGHT;
	if (jsonb_config_int(config, "max_in_flight", &n))
	{
		if (n < 1 || n > REDIS_MAX_MAX_IN_FLIGHT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_in_flight of a redis route must be between 1 and %d, not " INT64_FORMAT,
							REDIS_MAX_MAX_IN_FLIGHT, n)));
		route->max_in_flight = (int) n;
	}

	parse_headers(route, config);
	route->body = publisher_config_body(config, "redis");
	return route;
}

/* Append one RESP bulk string (an argument of a command) to buf. */
void
redis_append_arg(StringInfo buf, const char *data, size_t len)
{
	appendStringInfo(buf, "$%zu\r\n", len);
	appendBinaryStringInfo(buf, data, len);
	appendBinaryStringInfo(buf, "\r\n", 2);
}

/* Append the JSON text of a jsonb value (a key, or a header's value). */
static void
append_json_value(StringInfo buf, JsonbValue *v)
{
	if (v->type == jbvString)
	{
		char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

		escape_json(buf, s);
		pfree(s);
	}
	else if (v->type == jbvBinary)
		(void) JsonbToCString(buf, v->val.binary.data, v->val.binary.len);
	else
	{
		Jsonb	   *scalar = JsonbValueToJsonb(v);

		(void) JsonbToCString(buf, &scalar->root, VARSIZE(scalar));
	}
}

/*
 * The headers field into buf: the message's headers as they are when the
 * route has none; else the route's (those the message does not set), then
 * the message's.  False when the message's headers are not a JSON object
 * (a row written around enqueue) and the route has headers to merge.
 */
static bool
build_headers(StringInfo buf, const RedisRoute *route, const OutboxMessage *msg)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	bool		any = false;
	int			i;

	if (route->nheaders == 0)
	{
		(void) JsonbToCString(buf, &msg->headers->root, VARSIZE(msg->headers));
		return true;
	}
	if (!JB_ROOT_IS_OBJECT(msg->headers) || JB_ROOT_IS_SCALAR(msg->headers))
		return false;

	appendStringInfoChar(buf, '{');
	for (i = 0; i < route->nheaders; i++)
	{
		JsonbValue	found;
		const char *name = route->header_names[i];

		if (JB_ROOT_COUNT(msg->headers) > 0 &&
			getKeyJsonValueFromContainer(&msg->headers->root, name, strlen(name), &found))
			continue;
		if (any)
			appendStringInfoChar(buf, ',');
		appendStringInfoString(buf, route->header_members[i]);
		any = true;
	}
	it = JsonbIteratorInit(&msg->headers->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	val;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &val, true);
		if (any)
			appendStringInfoChar(buf, ',');
		append_json_value(buf, &k);
		appendStringInfoChar(buf, ':');
		append_json_value(buf, &val);
		any = true;
	}
	appendStringInfoChar(buf, '}');
	return true;
}

/*
 * NetTransport.prepare: build req's XADD (see the file header) in the
 * current memory context (the request's), and find its connection.
 * Returns false, with the item's outcome set on req, when the message
 * cannot be sent.
 */
bool
redis_prepare(NetRequest *req, const PublishItem *item)
{
	RedisRequest *r = (RedisRequest *) req;
	const OutboxMessage *msg = item->msg;
	const RedisRoute *route = (const RedisRoute *) item->route->parsed;
	StringInfoData cmd;
	StringInfoData field;
	char		number[32];
	int			argc;

	r->stream = publisher_expand_placeholders(route->stream, msg);
	if (r->stream[0] == '\0')
	{
		publisher_set_outcome(&req->item, PUBLISH_FAILED,
							  "the stream name \"%s\" is empty for this message", route->stream);
		return false;
	}

	argc = 3 + (route->maxlen > 0 ? 3 : 0) + 2 * 5 +
		(msg->message_key ? 2 : 0) + (msg->correlation_id ? 2 : 0);
	initStringInfo(&cmd);
	initStringInfo(&field);
	appendStringInfo(&cmd, "*%d\r\n", argc);
	redis_append_arg(&cmd, "XADD", 4);
	redis_append_arg(&cmd, r->stream, strlen(r->stream));
	if (route->maxlen > 0)
	{
		redis_append_arg(&cmd, "MAXLEN", 6);
		redis_append_arg(&cmd, "~", 1);
		snprintf(number, sizeof(number), INT64_FORMAT, route->maxlen);
		redis_append_arg(&cmd, number, strlen(number));
	}
	redis_append_arg(&cmd, "*", 1);

	redis_append_arg(&cmd, "id", 2);
	redis_append_arg(&cmd, msg->id_str, strlen(msg->id_str));
	redis_append_arg(&cmd, "topic", 5);
	redis_append_arg(&cmd, msg->topic, strlen(msg->topic));
	if (msg->message_key)
	{
		redis_append_arg(&cmd, "key", 3);
		redis_append_arg(&cmd, msg->message_key, strlen(msg->message_key));
	}
	publisher_build_body(&field, msg, route->body);
	redis_append_arg(&cmd, "payload", 7);
	redis_append_arg(&cmd, field.data, field.len);
	resetStringInfo(&field);
	if (!build_headers(&field, route, msg))
	{
		publisher_set_outcome(&req->item, PUBLISH_FAILED,
							  "the message's headers are not a JSON object");
		return false;
	}
	redis_append_arg(&cmd, "headers", 7);
	redis_append_arg(&cmd, field.data, field.len);
	pfree(field.data);
	redis_append_arg(&cmd, "attempt", 7);
	snprintf(number, sizeof(number), "%d", msg->attempt_count);
	redis_append_arg(&cmd, number, strlen(number));
	if (msg->correlation_id)
	{
		redis_append_arg(&cmd, "correlation_id", 14);
		redis_append_arg(&cmd, msg->correlation_id, strlen(msg->correlation_id));
	}

	r->command = cmd.data;
	r->command_len = cmd.len;
	r->cfg_timeout_ms = route->timeout_ms;
	r->conn = redis_conn_get(&route->server);
	return true;
}

/* Most requests of one route running at once: its max_in_flight. */
static int
redis_route_limit(const OutboxRoute *route)
{
	return ((const RedisRoute *) route->parsed)->max_in_flight;
}

/* Publisher.publish: hand the messages to the network machinery. */
static void
redis_publish(PublishItem *items, int n)
{
	netpub_publish(&redis_transport, items, n, redis_route_limit);
}

/* Publisher.capacity (see the file header). */
static int
redis_capacity(const OutboxRoute *route)
{
	const RedisRoute *r = (const RedisRoute *) route->parsed;
	int			limit = redis_conn_limit(&r->server, r->max_in_flight);

	return limit == 0 ? 0 : netpub_capacity(&redis_transport, route, limit);
}

const Publisher redis_publisher = {
	.name = "redis",
	.kind = PUBLISHER_NETWORK,
	.parse_config = redis_parse_config,
	.publish = redis_publish,
	.capacity = redis_capacity,
};

#else							/* !TXOUTBOX_WITH_REDIS */

const Publisher redis_publisher = {
	.name = "redis",
	.kind = PUBLISHER_NETWORK,
	.unavailable = "txoutbox was built without libhiredis (Debian package libhiredis-dev)",
};

#endif							/* TXOUTBOX_WITH_REDIS */
