/*-------------------------------------------------------------------------
 *
 * publish_nats.c
 *	  The nats publisher: each message is published to NATS JetStream and
 *	  succeeds on the stream's PubAck.  This file holds the route's config
 *	  {"url", "subject", "timeout_ms", "body", "headers", "max_in_flight"}
 *	  (checked when the route is added), the message built for a request
 *	  (subject, body, headers) and the Publisher; nats_transport.c holds the
 *	  connections and libnats.
 *
 * The url is nats://[user:password@]host[:port] or nats://token@host[:port],
 * one server; its user info is percent-decoded here and handed to libnats
 * apart from the url, so libnats never sees (nor prints) a secret in a url.
 * Errors name the url as "nats://user:***@host:port".
 *
 * Subjects: the route's "subject" (default "{topic}") with its
 * placeholders expanded must be a subject one may publish to: dot-separated
 * non-empty tokens, no spaces or control characters, no wildcards, and not
 * one of the server's own ("$..." such as the JetStream API, "_INBOX...").
 * add_route checks the template by expanding it for a sample message; a
 * message whose own subject is not valid fails (retrying cannot help).
 *
 * Headers: Nats-Msg-Id (the message id: the stream drops a second copy
 * within its duplicate window), Txoutbox-Topic, Txoutbox-Attempt,
 * Txoutbox-Key and Correlation-Id (when not null), Content-Type, then the
 * route's and the message's headers, later ones replacing earlier ones of
 * the same name; the Nats-* and Txoutbox-* names are reserved.
 *
 * Capacity: a route takes new messages while its connection is up and it
 * has fewer than max_in_flight waiting or awaiting their PubAck; while its
 * connection is down nothing is claimed for it (nats_transport.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "publisher.h"

#ifdef TXOUTBOX_WITH_NATS

#include "nats.h"

static const char *const nats_keys[] = {
	"url", "subject", "timeout_ms", "body", "headers", "max_in_flight", NULL
};

/* ---- config -------------------------------------------------------------- */

/* s made safe for a header value or an error text: control characters become '?'. */
static char *
printable(const char *s)
{
	char	   *v = pstrdup(s);
	char	   *p;

	for (p = v; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			*p = '?';
	return v;
}

/* Is c a token character of RFC 9110 (allowed in a header name)? */
static bool
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Why a header cannot be sent, or NULL; names neither the value nor a bad name. */
static const char *
header_problem(const char *name, int namelen, const char *value, int valuelen)
{
	int			i;

	if (namelen == 0)
		return "has an empty name";
	for (i = 0; i < namelen; i++)
		if (!is_tchar((unsigned char) name[i]))
			return "has a name that is not a valid header name";
	for (i = 0; i < valuelen; i++)
		if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
			return "has a value containing CR, LF or NUL";
	if (namelen >= 5 && pg_strncasecmp(name, "Nats-", 5) == 0)
		return "is reserved (Nats-* headers are the server's)";
	if (namelen >= 9 && pg_strncasecmp(name, "Txoutbox-", 9) == 0)
		return "is reserved (Txoutbox-* headers are txoutbox's own)";
	return NULL;
}

/*
 * Why subject cannot be published to, or NULL: it must be dot-separated
 * non-empty tokens of printable characters other than the wildcards, and
 * not a subject of the server's own.
 */
const char *
natspub_subject_problem(const char *subject)
{
	const char *p;
	bool		token_start = true;

	if (subject[0] == '\0')
		return "it is empty";
	if (strlen(subject) > NATS_MAX_SUBJECT_LEN)
		return psprintf("it is longer than %d bytes", NATS_MAX_SUBJECT_LEN);
	if (subject[0] == '$')
		return "subjects starting with \"$\" are the server's own (JetStream API, system)";
	if (strncmp(subject, "_INBOX.", 7) == 0 || strcmp(subject, "_INBOX") == 0)
		return "_INBOX subjects are for replies";
	for (p = subject; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c <= 0x20 || c == 0x7f)
			return "it contains a space or a control character";
		if (c == '*' || c == '>')
			return "it contains a wildcard (\"*\" or \">\")";
		if (c == '.')
		{
			if (token_start)
				return "it has an empty token (\"..\", or a leading or trailing \".\")";
			token_start = true;
		}
		else
			token_start = false;
	}
	if (token_start)
		return "it has an empty token (\"..\", or a leading or trailing \".\")";
	return NULL;
}

/* The value of a hexadecimal digit, or -1. */
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

/* s[0..len-1] percent-decoded (a new string); ERROR when malformed. */
static char *
percent_decode(const char *s, int len, const char *part)
{
	char	   *out = palloc(len + 1);
	int			n = 0;
	int			i;

	for (i = 0; i < len; i++)
	{
		int			hi = -1,
					lo = -1;

		if (s[i] != '%')
		{
			out[n++] = s[i];
			continue;
		}
		if (i + 2 < len)
		{
			hi = hex_value(s[i + 1]);
			lo = hex_value(s[i + 2]);
		}
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid percent-encoding in the %s of the url of a nats route", part),
					 errdetail("A \"%%\" must be followed by two hexadecimal digits other than 00.")));
		out[n++] = (char) (hi * 16 + lo);
		i += 2;
	}
	out[n] = '\0';
	return out;
}

/* Is host[0..len-1] a host name, an IPv4 address or a bracketed IPv6 one? */
static bool
host_is_valid(const char *host, int len)
{
	int			i;

	if (len == 0)
		return false;
	if (host[0] == '[')
	{
		if (len < 3 || host[len - 1] != ']')
			return false;
		for (i = 1; i < len - 1; i++)
			if (hex_value(host[i]) < 0 && host[i] != ':' && host[i] != '.')
				return false;
		return true;
	}
	for (i = 0; i < len; i++)
	{
		char		c = host[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

/*
 * Parse url (nats://[user:password@ | token@]host[:port][/]) into route:
 * server, user, password or token, and shown.  Errors never echo the url,
 * which may hold a secret.
 */
static void
parse_url(NatsRoute *route, const char *url)
{
	const char *auth;
	const char *end;
	const char *at = NULL;
	const char *hostport;
	const char *host;
	const char *colon = NULL;
	int			hostlen;
	int			port = NATS_DEFAULT_PORT;
	const char *p;

	if (pg_strncasecmp(url, "nats://", 7) != 0)
	{
		const char *sep = strstr(url, "://");

		if (sep != NULL && sep - url <= 16 && strcspn(url, ":@/") == (size_t) (sep - url))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("url scheme \"%.*s\" is not allowed in a nats route", (int) (sep - url), url),
					 errdetail("Give a nats:// URL such as \"nats://user:password@broker:4222\".")));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url of a nats route must start with \"nats://\""),
				 errhint("Give a URL such as \"nats://user:password@broker:4222\".")));
	}
	auth = url + 7;
	end = auth + strcspn(auth, "/?#");
	if (*end == '?' || *end == '#' || (*end == '/' && end[1] != '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url of a nats route may not have a path, query or fragment")));
	for (p = auth; p < end; p++)
		if (*p == '@')
			at = p;
	if (at != NULL)
	{
		const char *sep = memchr(auth, ':', at - auth);

		if (at == auth)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("url of a nats route has an empty user info before \"@\"")));
		if (sep != NULL)
		{
			if (sep == auth)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("url of a nats route has a password but no user name")));
			route->user = percent_decode(auth, sep - auth, "user name");
			route->password = percent_decode(sep + 1, at - sep - 1, "password");
		}
		else
			route->token = percent_decode(auth, at - auth, "token");
		hostport = at + 1;
	}
	else
		hostport = auth;

	/* host, then an optional :port (after the brackets of an IPv6 address) */
	host = hostport;
	p = hostport;
	if (*p == '[')
	{
		const char *close = memchr(p, ']', end - p);

		p = close ? close + 1 : end;
	}
	colon = memchr(p, ':', end - p);
	hostlen = (colon ? colon : end) - host;
	if (memchr(hostport, ',', end - hostport) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url of a nats route names more than one server"),
				 errdetail("Give one server per route.")));
	if (!host_is_valid(host, hostlen))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url of a nats route has no valid host"),
				 errhint("Give a URL such as \"nats://user:password@broker:4222\".")));
	if (colon != NULL)
	{
		int			digits = end - colon - 1;
		long		v = 0;
		int			i;

		for (i = 0; i < digits; i++)
		{
			if (colon[1 + i] < '0' || colon[1 + i] > '9' || v > 65535)
			{
				v = -1;
				break;
			}
			v = v * 10 + (colon[1 + i] - '0');
		}
		if (digits == 0 || v < 1 || v > 65535)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("url of a nats route has an invalid port"),
					 errdetail("The port must be a number from 1 to 65535.")));
		port = (int) v;
	}
	route->server = psprintf("nats://%.*s:%d", hostlen, host, port);
	if (route->user)
		route->shown = psprintf("nats://%s:***@%.*s:%d", printable(route->user), hostlen, host, port);
	else if (route->token)
		route->shown = psprintf("nats://***@%.*s:%d", hostlen, host, port);
	else
		route->shown = route->server;
}

/* Parse the "headers" object into route->header_names/values. */
static void
parse_headers(NatsRoute *route, Jsonb *config)
{
	int			i;

	route->nheaders = jsonb_config_headers(config, &route->header_names, &route->header_values);
	for (i = 0; i < route->nheaders; i++)
	{
		const char *name = route->header_names[i];
		const char *value = route->header_values[i];
		const char *problem = header_problem(name, strlen(name), value, strlen(value));

		if (problem)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" in config of a nats route %s", name, problem)));
	}
}

/*
 * Check the subject template: known placeholders only, and a valid subject
 * once they are expanded for a sample message.
 */
static void
check_subject(const char *subject)
{
	OutboxMessage sample;
	const char *problem;

	publisher_check_placeholders(subject, "subject", "nats");
	memset(&sample, 0, sizeof(sample));
	sample.topic = "topic";
	sample.message_key = "key";
	sample.tenant_id = "tenant";
	problem = natspub_subject_problem(publisher_expand_placeholders(subject, &sample));
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subject of a nats route is not a valid subject to publish to: %s", problem),
				 errdetail("Placeholders were expanded for a sample message (topic \"topic\", key \"key\", tenant \"tenant\")."),
				 errhint("Use dot-separated tokens such as \"orders.{topic}\".")));
}

/* Check a nats route's config and return its NatsRoute. */
static void *
nats_parse_config(Jsonb *config)
{
	NatsRoute  *route = palloc0(sizeof(NatsRoute));
	char	   *url;
	int64		v;

	jsonb_config_check_keys(config, "nats", nats_keys);

	url = jsonb_config_string(config, "url");
	if (url == NULL || url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a nats route needs \"url\" in its config"),
				 errhint("Give a URL such as \"nats://user:password@broker:4222\".")));
	parse_url(route, url);

	route->subject = jsonb_config_string(config, "subject");
	if (route->subject == NULL)
		route->subject = pstrdup("{topic}");
	check_subject(route->subject);

	route->timeout_ms = NATS_DEFAULT_TIMEOUT_MS;
	if (jsonb_config_int(config, "timeout_ms", &v))
	{
		if (v < 1 || v > NATS_MAX_TIMEOUT_MS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout_ms of a nats route must be between 1 and %d, not " INT64_FORMAT,
							NATS_MAX_TIMEOUT_MS, v)));
		route->timeout_ms = (int) v;
	}

	route->max_in_flight = NATS_DEFAULT_MAX_IN_FLIGHT;
	if (jsonb_config_int(config, "max_in_flight", &v))
	{
		if (v < 1 || v > NATS_MAX_MAX_IN_FLIGHT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_in_flight of a nats route must be between 1 and %d, not " INT64_FORMAT,
							NATS_MAX_MAX_IN_FLIGHT, v)));
		route->max_in_flight = (int) v;
	}

	route->body = publisher_config_body(config, "nats");
	parse_headers(route, config);
	return route;
}

/* ---- the message of a request -------------------------------------------- */

/* Add or replace (case-insensitively by name) a header of r. */
static void
header_set(NatsRequest *r, int *cap, const char *name, const char *value)
{
	int			i;

	for (i = 0; i < r->nheaders; i++)
		if (pg_strcasecmp(r->header_names[i], name) == 0)
		{
			r->header_names[i] = (char *) name;
			r->header_values[i] = (char *) value;
			return;
		}
	if (r->nheaders == *cap)
	{
		*cap *= 2;
		r->header_names = repalloc(r->header_names, sizeof(char *) * *cap);
		r->header_values = repalloc(r->header_values, sizeof(char *) * *cap);
	}
	r->header_names[r->nheaders] = (char *) name;
	r->header_values[r->nheaders] = (char *) value;
	r->nheaders++;
}

/*
 * Add the message's own headers to r.  Returns NULL, or why the message
 * cannot be sent (retrying would not help).
 */
static char *
add_message_headers(NatsRequest *r, int *cap, const OutboxMessage *msg)
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
		const char *problem;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(k.val.string.val, k.val.string.len);
		tok = JsonbIteratorNext(&it, &val, true);
		if (tok != WJB_VALUE || val.type != jbvString)
			return psprintf("message header \"%s\" is not a string", printable(name));
		problem = header_problem(name, strlen(name), val.val.string.val, val.val.string.len);
		if (problem)
			return psprintf("message header \"%s\" %s", printable(name), problem);
		header_set(r, cap, name, pnstrdup(val.val.string.val, val.val.string.len));
	}
	return NULL;
}

/*
 * NetTransport.prepare: build req's subject, body and headers from item, in
 * the current memory context (the request's).  Returns false, with the
 * outcome set on req, when the message cannot be sent.
 */
bool
natspub_request_prepare(NetRequest *req, const PublishItem *item)
{
	NatsRequest *r = (NatsRequest *) req;
	const OutboxMessage *msg = item->msg;
	const NatsRoute *route = (const NatsRoute *) item->route->parsed;
	StringInfoData body;
	const char *problem;
	char	   *error;
	int			cap = 8;
	int			i;

	r->conn = natspub_conn_for(route);
	r->cfg_timeout_ms = route->timeout_ms;
	r->subject = publisher_expand_placeholders(route->subject, msg);
	problem = natspub_subject_problem(r->subject);
	if (problem)
	{
		publisher_set_outcome(&req->item, PUBLISH_FAILED,
							  "subject \"%.200s\" is not a valid subject to publish to: %s",
							  printable(r->subject), problem);
		return false;
	}

	initStringInfo(&body);
	publisher_build_body(&body, msg, route->body);
	r->body = body.data;
	r->body_len = body.len;

	r->header_names = palloc(sizeof(char *) * cap);
	r->header_values = palloc(sizeof(char *) * cap);
	header_set(r, &cap, "Content-Type", "application/json");
	if (msg->correlation_id)
		header_set(r, &cap, "Correlation-Id", printable(msg->correlation_id));
	header_set(r, &cap, "Txoutbox-Topic", printable(msg->topic));
	header_set(r, &cap, "Txoutbox-Attempt", psprintf("%d", msg->attempt_count));
	if (msg->message_key)
		header_set(r, &cap, "Txoutbox-Key", printable(msg->message_key));
	for (i = 0; i < route->nheaders; i++)
		header_set(r, &cap, route->header_names[i], route->header_values[i]);
	error = add_message_headers(r, &cap, msg);
	if (error)
	{
		publisher_set_outcome(&req->item, PUBLISH_FAILED, "%s", error);
		return false;
	}
	return true;
}

/* ---- the publisher ------------------------------------------------------- */

/* Most requests of a route waiting or awaiting their PubAck: max_in_flight. */
static int
nats_route_limit(const OutboxRoute *route)
{
	return ((const NatsRoute *) route->parsed)->max_in_flight;
}

/*
 * Publisher.publish: take the outcomes that arrived since the last wait,
 * then hand the new requests to the network machinery.
 */
static void
nats_publish(PublishItem *items, int n)
{
	natspub_take_results();
	netpub_publish(&natspub_transport, items, n, nats_route_limit);
}

/* Publisher.capacity (see the file header). */
static int
nats_capacity(const OutboxRoute *route)
{
	const NatsRoute *nr = (const NatsRoute *) route->parsed;

	return natspub_conn_capacity(natspub_conn_for(nr), route, nr->max_in_flight);
}

const Publisher nats_publisher = {
	.name = "nats",
	.kind = PUBLISHER_NETWORK,
	.parse_config = nats_parse_config,
	.publish = nats_publish,
	.capacity = nats_capacity,
};

#else							/* !TXOUTBOX_WITH_NATS */

const Publisher nats_publisher = {
	.name = "nats",
	.kind = PUBLISHER_NETWORK,
	.unavailable = "txoutbox was built without libnats (Debian package libnats-dev)",
};

#endif							/* TXOUTBOX_WITH_NATS */
