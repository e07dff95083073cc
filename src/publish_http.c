/*-------------------------------------------------------------------------
 *
 * publish_http.c
 *	  The http publisher: each message is a webhook request, signed the
 *	  Standard Webhooks way, sent with libcurl's multi interface.
 *
 * Config {"url", "method", "headers", "timeout_ms", "secret", "body"} is
 * checked by http_parse_config (add_route, and every round).  Only http and
 * https URLs are accepted; when txoutbox.http_allowed_hosts is set, the
 * URL's host must be one of its entries (a name, or "*.example.com" for any
 * subdomain of example.com).  Headers are sent in this order of precedence:
 * the message's headers over the route's over ours (Content-Type,
 * User-Agent, X-Correlation-Id), except the reserved ones (webhook-*,
 * X-Txoutbox-*, and those that frame the request), which neither may set.
 *
 * Requests: external publisher, so publish() runs with no transaction open
 * in the worker, hands each message's request over and returns at once;
 * the dispatcher collects the outcomes (http_collect) in that round or a
 * later one, so a slow endpoint holds up only its own messages.  Up to
 * txoutbox.http_max_concurrency requests run at once, at most three
 * quarters of them for one route; the others wait their turn, and their
 * timeout starts only when they are sent.  A route with that many requests
 * waiting or running is not claimed from until some finish.  One CURLM
 * handle lives for the whole process, so its connection cache (and DNS
 * cache) keeps connections alive across messages and rounds; it never
 * holds more than http_max_concurrency connections.  Each wait polls curl
 * with a short timeout and checks for interrupts, so SIGTERM ends the
 * worker promptly even with requests in flight.  Redirects are not
 * followed, proxies from the environment are not used (the worker would
 * otherwise inherit the postmaster's http_proxy), and "Expect:
 * 100-continue" is never sent.  In dispatch() (in the caller's transaction)
 * publish() finishes every request before it returns.
 *
 * Leases: no request may run past its claim's lease (OutboxMessage
 * lease_until, less a margin to record the outcome): a request that would
 * is given a shorter timeout, or is not sent and is released for an
 * immediate retry.  Otherwise another dispatcher could claim and send the
 * message again while it is in flight, and its mark would be refused.
 *
 * Outcomes: 2xx succeeds; curl errors (connection refused, timeouts, reset)
 * and 408, 425, 429 and 5xx are retried, with Retry-After (seconds or an
 * HTTP date) as the delay when given; any other status fails the message.
 * The error text names the status and the start of the response body, or
 * curl's error and the phase that timed out.  Neither the secret, the
 * signature, the URL nor any header value is ever put in an error.
 *
 * Memory: a request lives in a memory context of its own, from the
 * round that hands it over until the collect after the one that returned
 * its outcome; curl's own allocations (easy handles, header lists) are
 * freed when the request ends.  curl callbacks never call into PostgreSQL (no palloc, no
 * ereport): they write into fixed buffers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_compat.h"

#include <time.h>

#include <curl/curl.h>

#include "access/xact.h"
#include "common/base64.h"
#include "common/hmac.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "publisher.h"
#include "txoutbox.h"

#define HTTP_MAX_TIMEOUT_MS		3600000
#define HTTP_CONNECT_TIMEOUT_MS 10000	/* at most; never above timeout_ms */
#define HTTP_POLL_MS			100
#define HTTP_LATCH_CHECK_MS		2		/* latch checks while collecting */
#define HTTP_QUEUE_FACTOR		32		/* most requests queued per route, in
										 * multiples of http_max_concurrency */
#define HTTP_MIN_LEASE_MS		1000	/* shortest timeout a lease may cut to */
#define HTTP_LEASE_MARGIN_MS	5000	/* at most; kept to record outcomes */
#define HTTP_RESPONSE_CAP		1024	/* response body bytes kept */
#define HTTP_ERROR_BODY			200 /* of which shown in last_error */
#define HTTP_MAX_SECRET_BYTES	1024
#define HTTP_USER_AGENT			"txoutbox/0.1"
#define HMAC_SHA256_LEN			32

static const char *const http_keys[] = {
	"url", "method", "headers", "timeout_ms", "secret", "body", NULL
};

/* Headers neither a route nor a message may set (compared case-insensitively). */
static const char *const reserved_headers[] = {
	"content-length", "transfer-encoding", "host", "connection", "expect",
	"te", "upgrade", "keep-alive", "proxy-connection",
	"webhook-id", "webhook-timestamp", "webhook-signature",
	"x-txoutbox-topic", "x-txoutbox-attempt", NULL
};

/* A route's config, parsed. */
typedef struct HttpRoute
{
	char	   *url;			/* normalised by curl_url */
	const char *method;			/* POST, PUT or PATCH */
	int			timeout_ms;		/* 0: txoutbox.http_timeout */
	bool		envelope;		/* body is the envelope, not the payload */
	uint8	   *key;			/* decoded secret, or NULL */
	int			keylen;
	int			nheaders;
	char	  **header_names;
	char	  **header_values;
} HttpRoute;

/*
 * One request: built (body, headers) when its message is handed over,
 * sent when a slot is free, kept until its outcome is collected.  It lives
 * in its own memory context, since it outlives the round that made it.
 */
typedef struct HttpRequest
{
	MemoryContext cxt;			/* holds this and all it points to */
	struct HttpRequest *next;	/* in one of the lists below */
	PublishItem item;			/* outcome; msg and route point below */
	OutboxMessage msg;			/* id and attempt */
	OutboxRoute route;			/* id and delivery policy */
	bool		sync;			/* dispatch(): its caller waits for it */
	char	   *url;
	const char *method;
	int			cfg_timeout_ms; /* the route's timeout */
	TimestampTz deadline;		/* must be done by then (lease); 0: none */
	CURL	   *easy;			/* NULL unless in flight */
	struct curl_slist *headers;
	char	   *body;
	size_t		body_len;
	int			timeout_ms;		/* this request's */
	int			route_timeout_ms;	/* the route's, when the lease cut it */
	char		errbuf[CURL_ERROR_SIZE];
	char		response[HTTP_RESPONSE_CAP];
	size_t		response_len;
	char		retry_after[64];
	bool		got_status;		/* a status line arrived */
} HttpRequest;

typedef struct RequestList
{
	HttpRequest *head;
	HttpRequest *tail;
	int			n;
} RequestList;

/*
 * Process-lifetime state: the connection cache lives in multi; requests
 * move waiting -> running -> done -> collected (freed at the next collect).
 */
static CURLM *http_multi = NULL;
static ResourceOwner http_resowner = NULL;
static MemoryContext http_cxt = NULL;
static RequestList waiting;
static RequestList running;
static RequestList done;
static RequestList collected;

/* ---- config -------------------------------------------------------------- */

/* Is c a token character of RFC 9110 (allowed in a header name)? */
static bool
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Is name a header txoutbox sets itself or that would break the framing? */
static bool
is_reserved_header(const char *name)
{
	const char *const *r;

	for (r = reserved_headers; *r; r++)
		if (pg_strcasecmp(*r, name) == 0)
			return true;
	return false;
}

/*
 * Why a header (name, value) cannot be sent, or NULL when it can.  Neither
 * the value nor (beyond its validity) the name is echoed.
 */
static const char *
header_problem(const char *name, int namelen, const char *value, int valuelen)
{
	int			i;

	if (namelen == 0)
		return "has an empty name";
	for (i = 0; i < namelen; i++)
		if (!is_tchar((unsigned char) name[i]))
			return "has a name that is not a valid HTTP header name";
	for (i = 0; i < valuelen; i++)
		if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
			return "has a value containing CR, LF or NUL";
	return NULL;
}

/* Does host match an entry of txoutbox.http_allowed_hosts (or is it empty)? */
static bool
host_allowed(const char *host)
{
	char	   *list;
	char	   *entry;
	char	   *save = NULL;
	char	   *h = pstrdup(host);
	size_t		hlen = strlen(h);
	bool		any = false;

	if (txoutbox_http_allowed_hosts == NULL || txoutbox_http_allowed_hosts[0] == '\0')
		return true;
	/* compare IPv6 literals without their brackets */
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']')
	{
		h[hlen - 1] = '\0';
		h++;
	}
	list = pstrdup(txoutbox_http_allowed_hosts);
	for (entry = strtok_r(list, ",", &save); entry; entry = strtok_r(NULL, ",", &save))
	{
		size_t		len;

		while (*entry == ' ' || *entry == '\t')
			entry++;
		len = strlen(entry);
		while (len > 0 && (entry[len - 1] == ' ' || entry[len - 1] == '\t'))
			entry[--len] = '\0';
		if (len >= 2 && entry[0] == '[' && entry[len - 1] == ']')
		{
			entry[--len] = '\0';
			entry++;
			len--;
		}
		if (len == 0)
			continue;
		any = true;
		if (pg_strcasecmp(entry, h) == 0)
			return true;
		/* "*.example.com" matches any name ending in ".example.com" */
		if (len > 2 && entry[0] == '*' && entry[1] == '.' &&
			strlen(h) > len - 1 &&
			pg_strcasecmp(h + strlen(h) - (len - 1), entry + 1) == 0)
			return true;
	}
	return !any;
}

/* Parse and check the url: absolute, http or https, host allowed. */
static char *
parse_url(const char *url)
{
	CURLU	   *u = curl_url();
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *full = NULL;
	char	   *result;

	if (u == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	rc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
	{
		const char *why = curl_url_strerror(rc);

		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid url in config of an http route: %s", why),
				 errhint("Give an absolute URL such as \"https://example.com/hooks\".")));
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		(pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0))
	{
		char	   *shown = scheme ? pstrdup(scheme) : pstrdup("");

		curl_free(scheme);
		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url scheme \"%s\" is not allowed in an http route", shown),
				 errdetail("Only http and https URLs are allowed.")));
	}
	curl_free(scheme);
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host == NULL || host[0] == '\0')
	{
		curl_free(host);
		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("url of an http route has no host")));
	}
	if (!host_allowed(host))
	{
		char	   *shown = pstrdup(host);

		curl_free(host);
		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("host \"%s\" is not in txoutbox.http_allowed_hosts", shown),
				 errhint("Ask a superuser to add it to txoutbox.http_allowed_hosts.")));
	}
	curl_free(host);
	if (curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
	{
		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid url in config of an http route")));
	}
	result = pstrdup(full);
	curl_free(full);
	curl_url_cleanup(u);
	return result;
}

/* Decode a "whsec_<base64>" secret into route->key. */
static void
parse_secret(HttpRoute *route, const char *secret)
{
	const char *b64;
	int			len;
	int			declen;
	char	   *key;

	if (strncmp(secret, "whsec_", 6) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret of an http route must start with \"whsec_\""),
				 errdetail("A Standard Webhooks secret is \"whsec_\" followed by the base64 of the key.")));
	b64 = secret + 6;
	len = strlen(b64);
	key = palloc(pg_b64_dec_len(len) + 1);
	declen = (len == 0) ? -1 : compat_b64_decode(b64, len, key, pg_b64_dec_len(len));
	if (declen <= 0 || declen > HTTP_MAX_SECRET_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("secret of an http route is not valid base64 after \"whsec_\""),
				 errdetail("The key must be 1 to %d bytes, base64-encoded.", HTTP_MAX_SECRET_BYTES)));
	route->key = (uint8 *) key;
	route->keylen = declen;
}

/* Parse the "headers" object into route->header_names/values. */
static void
parse_headers(HttpRoute *route, Jsonb *config)
{
	JsonbValue	v;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbIteratorToken tok;
	int			cap = 8;

	if (!getKeyJsonValueFromContainer(&config->root, "headers", 7, &v) || v.type == jbvNull)
		return;
	if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("route config field \"headers\" must be a JSON object of strings")));

	route->header_names = palloc(sizeof(char *) * cap);
	route->header_values = palloc(sizeof(char *) * cap);
	it = JsonbIteratorInit(v.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue	val;
		const char *problem;
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
		problem = header_problem(name, strlen(name), val.val.string.val, val.val.string.len);
		if (problem)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" in config of an http route %s", name, problem)));
		if (is_reserved_header(name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" cannot be set by an http route", name),
					 errdetail("txoutbox sets it itself, or it would break the request's framing.")));
		if (route->nheaders == cap)
		{
			cap *= 2;
			route->header_names = repalloc(route->header_names, sizeof(char *) * cap);
			route->header_values = repalloc(route->header_values, sizeof(char *) * cap);
		}
		route->header_names[route->nheaders] = name;
		route->header_values[route->nheaders] = pnstrdup(val.val.string.val, val.val.string.len);
		route->nheaders++;
	}
}

/* Check an http route's config and return its HttpRoute. */
static void *
http_parse_config(Jsonb *config)
{
	HttpRoute  *route = palloc0(sizeof(HttpRoute));
	char	   *url;
	char	   *method;
	char	   *secret;
	char	   *body;
	int64		timeout;

	jsonb_config_check_keys(config, "http", http_keys);

	url = jsonb_config_string(config, "url");
	if (url == NULL || url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an http route needs \"url\" in its config")));
	route->url = parse_url(url);

	method = jsonb_config_string(config, "method");
	if (method == NULL || pg_strcasecmp(method, "POST") == 0)
		route->method = "POST";
	else if (pg_strcasecmp(method, "PUT") == 0)
		route->method = "PUT";
	else if (pg_strcasecmp(method, "PATCH") == 0)
		route->method = "PATCH";
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("method of an http route must be POST, PUT or PATCH, not \"%s\"", method)));

	parse_headers(route, config);

	if (jsonb_config_int(config, "timeout_ms", &timeout))
	{
		if (timeout < 1 || timeout > HTTP_MAX_TIMEOUT_MS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout_ms of an http route must be between 1 and %d, not " INT64_FORMAT,
							HTTP_MAX_TIMEOUT_MS, timeout)));
		route->timeout_ms = (int) timeout;
	}

	secret = jsonb_config_string(config, "secret");
	if (secret != NULL)
		parse_secret(route, secret);

	body = jsonb_config_string(config, "body");
	if (body == NULL || strcmp(body, "payload") == 0)
		route->envelope = false;
	else if (strcmp(body, "envelope") == 0)
		route->envelope = true;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("body of an http route must be \"payload\" or \"envelope\"")));
	return route;
}

/* ---- requests ------------------------------------------------------------ */

/* Set up libcurl and the shared multi handle once per process. */
static void
http_init(void)
{
	if (http_multi != NULL)
		return;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	http_multi = curl_multi_init();
	if (http_multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	/* the HMAC code registers its OpenSSL contexts with a resource owner */
	http_resowner = ResourceOwnerCreate(NULL, "txoutbox http");
	http_cxt = AllocSetContextCreate(TopMemoryContext, "txoutbox http requests",
									 ALLOCSET_DEFAULT_SIZES);
}

/* curl write callback: keep the first HTTP_RESPONSE_CAP bytes, drop the rest. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpRequest *r = (HttpRequest *) arg;
	size_t		len = size * nmemb;
	size_t		room = HTTP_RESPONSE_CAP - r->response_len;

	if (room > 0)
	{
		memcpy(r->response + r->response_len, data, Min(len, room));
		r->response_len += Min(len, room);
	}
	return len;
}

/* curl header callback: remember the last response's Retry-After. */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpRequest *r = (HttpRequest *) arg;
	size_t		len = size * nmemb;
	static const char name[] = "retry-after:";

	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
	{
		/* a new response (after 1xx): forget the earlier one's */
		r->got_status = true;
		r->retry_after[0] = '\0';
		r->response_len = 0;
	}
	else if (len > sizeof(name) - 1 && pg_strncasecmp(data, name, sizeof(name) - 1) == 0)
	{
		const char *v = data + sizeof(name) - 1;
		size_t		vlen = len - (sizeof(name) - 1);

		while (vlen > 0 && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
							v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		vlen = Min(vlen, sizeof(r->retry_after) - 1);
		memcpy(r->retry_after, v, vlen);
		r->retry_after[vlen] = '\0';
	}
	return len;
}

/* base64(HMAC-SHA256(key, id "." ts "." body)) into out; false on failure. */
static bool
sign(const HttpRoute *route, const char *id, const char *ts, const char *body,
	 size_t bodylen, char *out, int outlen)
{
	ResourceOwner save = CurrentResourceOwner;
	uint8		mac[HMAC_SHA256_LEN];
	volatile bool ok = false;
	int			len;

	CurrentResourceOwner = http_resowner;
	PG_TRY();
	{
		pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

		if (ctx != NULL)
		{
			ok = pg_hmac_init(ctx, route->key, route->keylen) == 0 &&
				pg_hmac_update(ctx, (const uint8 *) id, strlen(id)) == 0 &&
				pg_hmac_update(ctx, (const uint8 *) ".", 1) == 0 &&
				pg_hmac_update(ctx, (const uint8 *) ts, strlen(ts)) == 0 &&
				pg_hmac_update(ctx, (const uint8 *) ".", 1) == 0 &&
				pg_hmac_update(ctx, (const uint8 *) body, bodylen) == 0 &&
				pg_hmac_final(ctx, mac, sizeof(mac)) == 0;
			pg_hmac_free(ctx);
		}
	}
	PG_FINALLY();
	{
		CurrentResourceOwner = save;
	}
	PG_END_TRY();
	if (!ok)
		return false;
	len = compat_b64_encode(mac, sizeof(mac), out, outlen - 1);
	explicit_bzero(mac, sizeof(mac));
	if (len < 0)
		return false;
	out[len] = '\0';
	return true;
}

/* A header value made safe: control characters replaced by '?'. */
static char *
safe_header_value(const char *s)
{
	char	   *v = pstrdup(s);
	char	   *p;

	for (p = v; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			*p = '?';
	return v;
}

typedef struct HeaderList
{
	int			n;
	int			cap;
	char	  **names;
	char	  **values;
} HeaderList;

/* Add or replace (case-insensitively by name) a header. */
static void
header_set(HeaderList *h, const char *name, const char *value)
{
	int			i;

	for (i = 0; i < h->n; i++)
		if (pg_strcasecmp(h->names[i], name) == 0)
		{
			h->values[i] = (char *) value;
			return;
		}
	if (h->n == h->cap)
	{
		h->cap = h->cap ? h->cap * 2 : 16;
		h->names = h->names ? repalloc(h->names, sizeof(char *) * h->cap) : palloc(sizeof(char *) * h->cap);
		h->values = h->values ? repalloc(h->values, sizeof(char *) * h->cap) : palloc(sizeof(char *) * h->cap);
	}
	h->names[h->n] = (char *) name;
	h->values[h->n] = (char *) value;
	h->n++;
}

/*
 * Add the message's headers to h.  Returns NULL, or why the message cannot
 * be sent (a permanent problem: retrying would not help).
 */
static char *
add_message_headers(HeaderList *h, const OutboxMessage *msg)
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
			return psprintf("message header \"%s\" is not a string", name);
		problem = header_problem(name, strlen(name), val.val.string.val, val.val.string.len);
		if (problem)
			return psprintf("message header \"%s\" %s", name, problem);
		if (is_reserved_header(name))
			return psprintf("message header \"%s\" cannot be set by a message", name);
		header_set(h, name, pnstrdup(val.val.string.val, val.val.string.len));
	}
	return NULL;
}

/*
 * Build the request of item (body and header list) in a memory context of
 * its own, keeping what the outcome needs (id, attempt, route policy).
 * Returns NULL, with item's outcome set, when it cannot be sent.
 */
static HttpRequest *
build_request(PublishItem *item, TimestampTz deadline)
{
	const OutboxMessage *msg = item->msg;
	const HttpRoute *route = (const HttpRoute *) item->route->parsed;
	MemoryContext cxt = AllocSetContextCreate(http_cxt, "txoutbox http request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	HttpRequest *r = palloc0(sizeof(HttpRequest));
	StringInfoData body;
	HeaderList	h = {0};
	char		ts[32];
	char	   *problem;
	int			i;

	r->cxt = cxt;
	r->item = *item;
	r->item.msg = &r->msg;
	r->item.route = &r->route;
	r->item.outcome = PUBLISH_IN_FLIGHT;
	r->item.error = NULL;
	r->item.retry_after_ms = -1;
	memcpy(&r->msg.id, &msg->id, sizeof(pg_uuid_t));
	memcpy(r->msg.id_str, msg->id_str, sizeof(r->msg.id_str));
	r->msg.attempt_count = msg->attempt_count;
	r->msg.max_attempts = msg->max_attempts;
	r->route.id = item->route->id;
	r->route.policy = item->route->policy;
	r->route.publisher = item->route->publisher;
	r->url = pstrdup(route->url);
	r->method = route->method;
	r->cfg_timeout_ms = route->timeout_ms > 0 ? route->timeout_ms : txoutbox_http_timeout_ms;
	r->deadline = deadline;

	initStringInfo(&body);
	if (route->envelope)
		publisher_build_envelope(&body, msg, true);
	else
		JsonbToCString(&body, &msg->payload->root, VARSIZE(msg->payload));
	r->body = body.data;
	r->body_len = body.len;

	snprintf(ts, sizeof(ts), "%lld", (long long) time(NULL));
	header_set(&h, "Content-Type", "application/json");
	header_set(&h, "User-Agent", HTTP_USER_AGENT);
	header_set(&h, "webhook-id", r->msg.id_str);
	header_set(&h, "webhook-timestamp", pstrdup(ts));
	if (route->key)
	{
		char		sig[64];

		if (!sign(route, msg->id_str, ts, body.data, body.len, sig, sizeof(sig)))
		{
			MemoryContextSwitchTo(old);
			publisher_set_outcome(item, PUBLISH_RETRY, "could not compute the webhook signature");
			goto fail;
		}
		header_set(&h, "webhook-signature", psprintf("v1,%s", sig));
	}
	header_set(&h, "X-Txoutbox-Topic", safe_header_value(msg->topic));
	header_set(&h, "X-Txoutbox-Attempt", psprintf("%d", msg->attempt_count));
	if (msg->correlation_id)
		header_set(&h, "X-Correlation-Id", safe_header_value(msg->correlation_id));
	for (i = 0; i < route->nheaders; i++)
		header_set(&h, route->header_names[i], route->header_values[i]);
	problem = add_message_headers(&h, msg);
	if (problem)
	{
		MemoryContextSwitchTo(old);
		publisher_set_outcome(item, PUBLISH_FAILED, "%s", problem);
		goto fail;
	}
	/* no "Expect: 100-continue" round trip for large bodies */
	header_set(&h, "Expect", "");

	for (i = 0; i < h.n; i++)
	{
		/* "Name:" alone would delete the header; "Name;" sends it empty */
		char	   *line = h.values[i][0] == '\0' && pg_strcasecmp(h.names[i], "Expect") != 0 ?
			psprintf("%s;", h.names[i]) : psprintf("%s: %s", h.names[i], h.values[i]);
		struct curl_slist *next = curl_slist_append(r->headers, line);

		pfree(line);
		if (next == NULL)
		{
			MemoryContextSwitchTo(old);
			publisher_set_outcome(item, PUBLISH_RETRY, "out of memory building the request");
			goto fail;
		}
		r->headers = next;
	}
	MemoryContextSwitchTo(old);
	return r;

fail:
	if (r->headers)
		curl_slist_free_all(r->headers);
	MemoryContextDelete(cxt);
	return NULL;
}

/*
 * Send request r with timeout_ms as its timeout: an easy handle added to
 * the multi handle.  Returns false, with r's outcome set, when it cannot.
 */
static bool
send_request(HttpRequest *r, int timeout_ms)
{
	CURL	   *easy;

	r->timeout_ms = timeout_ms;
	easy = curl_easy_init();
	if (easy == NULL)
	{
		publisher_set_outcome(&r->item, PUBLISH_RETRY, "could not create a libcurl handle");
		return false;
	}
	r->easy = easy;
	r->errbuf[0] = '\0';
	if (curl_easy_setopt(easy, CURLOPT_URL, r->url) != CURLE_OK ||
#if LIBCURL_VERSION_NUM >= 0x075500	/* 7.85.0 */
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
#else
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK ||
#endif
		curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_PROXY, "") != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) r->timeout_ms) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
						 (long) Min(r->timeout_ms, HTTP_CONNECT_TIMEOUT_MS)) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_POST, 1L) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) r->body_len) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, r->body) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST,
						 strcmp(r->method, "POST") == 0 ? NULL : r->method) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_WRITEDATA, r) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_HEADERDATA, r) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->errbuf) != CURLE_OK ||
		curl_easy_setopt(easy, CURLOPT_PRIVATE, r) != CURLE_OK ||
		curl_multi_add_handle(http_multi, easy) != CURLM_OK)
	{
		curl_easy_cleanup(easy);
		r->easy = NULL;
		publisher_set_outcome(&r->item, PUBLISH_RETRY, "could not set up the libcurl request");
		return false;
	}
	return true;
}

/* Take request r out of the multi handle and free what curl allocated. */
static void
release_request(HttpRequest *r)
{
	if (r->easy)
	{
		curl_multi_remove_handle(http_multi, r->easy);
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
	}
	if (r->headers)
	{
		curl_slist_free_all(r->headers);
		r->headers = NULL;
	}
}

/*
 * Up to HTTP_ERROR_BODY bytes of the response body as safe text: control
 * characters become spaces, and bytes that are not valid in the database
 * encoding become '?'.
 */
static char *
response_excerpt(const HttpRequest *r)
{
	StringInfoData buf;
	size_t		i = 0;
	size_t		len = r->response_len;
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);

	initStringInfo(&buf);
	while (i < len && buf.len < HTTP_ERROR_BODY)
	{
		unsigned char c = (unsigned char) r->response[i];

		if (c < 0x80)
		{
			appendStringInfoChar(&buf, (c < 0x20 || c == 0x7f) ? ' ' : (char) c);
			i++;
			continue;
		}
		if (utf8)
		{
			int			l = pg_utf_mblen((const unsigned char *) &r->response[i]);

			if (i + l <= len && pg_utf8_islegal((const unsigned char *) &r->response[i], l))
			{
				appendBinaryStringInfo(&buf, &r->response[i], l);
				i += l;
				continue;
			}
		}
		appendStringInfoChar(&buf, '?');
		i++;
	}
	/* trim trailing blanks */
	while (buf.len > 0 && buf.data[buf.len - 1] == ' ')
		buf.data[--buf.len] = '\0';
	return buf.data;
}

/* Retry-After as a delay in ms (seconds or an HTTP date), or -1. */
static int64
parse_retry_after(const char *v)
{
	const char *p;
	time_t		when;
	time_t		now;

	if (v[0] == '\0')
		return -1;
	for (p = v; *p; p++)
		if (*p < '0' || *p > '9')
			break;
	if (*p == '\0')
	{
		if (strlen(v) > 9)
			return (int64) 999999999 * 1000;
		return (int64) atol(v) * 1000;
	}
	when = curl_getdate(v, NULL);
	if (when == (time_t) -1)
		return -1;
	now = time(NULL);
	return when > now ? (int64) (when - now) * 1000 : 0;
}

/*
 * Describe a timeout: which phase it happened in, and which limit ran out.
 * The phase comes from facts every libcurl version reports the same way:
 * a local port once the connection is up (7.88 says 0 before that, 8.x -1),
 * whether this transfer made a new connection, the TLS handshake time, the
 * bytes sent, and whether a status line arrived (on_header).  The phase
 * times are not used: 8.x reports elapsed time for phases never reached.
 */
static char *
describe_timeout(HttpRequest *r)
{
	long		local_port = 0;
	long		new_connections = 0;
	curl_off_t	tls_us = 0;
	curl_off_t	total_us = 0;
	curl_off_t	sent = 0;
	char	   *scheme = NULL;
	long long	elapsed_ms;
	int			connect_limit = Min(r->timeout_ms, HTTP_CONNECT_TIMEOUT_MS);
	char	   *limit;

	curl_easy_getinfo(r->easy, CURLINFO_LOCAL_PORT, &local_port);
	curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &new_connections);
	curl_easy_getinfo(r->easy, CURLINFO_APPCONNECT_TIME_T, &tls_us);
	curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &total_us);
	curl_easy_getinfo(r->easy, CURLINFO_SIZE_UPLOAD_T, &sent);
	curl_easy_getinfo(r->easy, CURLINFO_SCHEME, &scheme);
	elapsed_ms = (long long) (total_us / 1000);

	if (local_port <= 0)
		return psprintf("timed out after %lld ms while connecting (connect timeout %d ms)",
						elapsed_ms, connect_limit);
	if (new_connections > 0 && tls_us == 0 && scheme != NULL && pg_strcasecmp(scheme, "https") == 0)
		return psprintf("timed out after %lld ms during the TLS handshake (connect timeout %d ms)",
						elapsed_ms, connect_limit);
	if (r->route_timeout_ms > 0)
		limit = psprintf("timeout_ms %d, cut to %d ms by the claim's lease",
						 r->route_timeout_ms, r->timeout_ms);
	else
		limit = psprintf("timeout_ms %d", r->timeout_ms);
	if (!r->got_status && sent < (curl_off_t) r->body_len)
		return psprintf("timed out after %lld ms sending the request (%s)", elapsed_ms, limit);
	if (!r->got_status)
		return psprintf("timed out after %lld ms waiting for the response (%s)", elapsed_ms, limit);
	return psprintf("timed out after %lld ms reading the response (%s)", elapsed_ms, limit);
}

/*
 * Did the request reach a server (is a connection up)?  A local port is the
 * sign every libcurl version gives alike (see describe_timeout).
 */
static bool
request_was_sent(HttpRequest *r)
{
	long		local_port = 0;

	curl_easy_getinfo(r->easy, CURLINFO_LOCAL_PORT, &local_port);
	return local_port > 0;
}

/* Set the outcome of a finished request from curl's result and the status. */
static void
finish_request(HttpRequest *r, CURLcode result)
{
	PublishItem *item = &r->item;
	long		status = 0;

	item->retry_after_ms = -1;
	if (result != CURLE_OK)
	{
		if (result == CURLE_OPERATION_TIMEDOUT)
			publisher_set_outcome(item, PUBLISH_RETRY, "%s", describe_timeout(r));
		else if (result == CURLE_URL_MALFORMAT ||
				 (result == CURLE_UNSUPPORTED_PROTOCOL && !request_was_sent(r)))
			publisher_set_outcome(item, PUBLISH_FAILED, "request refused by libcurl: %s",
								  r->errbuf[0] ? r->errbuf : curl_easy_strerror(result));
		else
		{
			/*
			 * Anything else is worth another try, including an answer that
			 * is not HTTP (libcurl calls that an unsupported protocol too).
			 */
			publisher_set_outcome(item, PUBLISH_RETRY, "%s",
								  r->errbuf[0] ? r->errbuf : curl_easy_strerror(result));
		}
		return;
	}

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 200 && status <= 299)
	{
		publisher_set_outcome(item, PUBLISH_SUCCEEDED, NULL);
		return;
	}
	if (status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599))
	{
		char	   *excerpt = response_excerpt(r);

		publisher_set_outcome(item, PUBLISH_RETRY, "HTTP %ld%s%s", status,
							  excerpt[0] ? ": " : "", excerpt);
		item->retry_after_ms = parse_retry_after(r->retry_after);
	}
	else
	{
		char	   *excerpt = response_excerpt(r);

		publisher_set_outcome(item, PUBLISH_FAILED, "HTTP %ld%s%s%s", status,
							  (status >= 300 && status <= 399) ? " (redirects are not followed)" : "",
							  excerpt[0] ? ": " : "", excerpt);
	}
}

/*
 * The timeout request r may have when sent now, or 0 when it must not be
 * sent: it could not finish before its deadline.
 */
static int
request_timeout(HttpRequest *r)
{
	int			timeout = r->cfg_timeout_ms;
	long		remaining;

	if (r->deadline == 0)
		return timeout;
	remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), r->deadline);
	if (remaining >= timeout)
		return timeout;
	if (remaining < Min(timeout, HTTP_MIN_LEASE_MS))
		return 0;
	r->route_timeout_ms = timeout;
	return (int) remaining;
}

/* Append r to list l. */
static void
list_push(RequestList *l, HttpRequest *r)
{
	r->next = NULL;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	l->n++;
}

/* Unlink r (whose predecessor in l is prev, or NULL) from l. */
static void
list_unlink(RequestList *l, HttpRequest *prev, HttpRequest *r)
{
	if (prev)
		prev->next = r->next;
	else
		l->head = r->next;
	if (l->tail == r)
		l->tail = prev;
	r->next = NULL;
	l->n--;
}

/* Unlink r from l, wherever it is in it. */
static void
list_remove(RequestList *l, HttpRequest *r)
{
	HttpRequest *prev = NULL;
	HttpRequest *it;

	for (it = l->head; it && it != r; it = it->next)
		prev = it;
	Assert(it == r);
	list_unlink(l, prev, r);
}

/* Release r's curl resources and its memory. */
static void
free_request(HttpRequest *r)
{
	release_request(r);
	MemoryContextDelete(r->cxt);
}

/* Requests of route_id in list l. */
static int
count_route(const RequestList *l, int64 route_id)
{
	const HttpRequest *r;
	int			n = 0;

	for (r = l->head; r; r = r->next)
		if (r->route.id == route_id)
			n++;
	return n;
}

/* Most requests one route may have running: the others keep a quarter. */
static int
route_running_cap(void)
{
	int			total = Max(txoutbox_http_max_concurrency, 1);

	return Max(1, total - total / 4);
}

/* Set r's outcome from a finished transfer (in r's memory); free curl's. */
static void
complete_request(HttpRequest *r, CURLcode result)
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	finish_request(r, result);
	MemoryContextSwitchTo(old);
	release_request(r);
	if (r->body)
	{
		pfree(r->body);
		r->body = NULL;
	}
}

/* Send waiting requests, oldest first, while slots are free. */
static void
send_waiting(void)
{
	int			max_running = Max(txoutbox_http_max_concurrency, 1);
	int			cap = route_running_cap();
	HttpRequest *prev = NULL;
	HttpRequest *r = waiting.head;

	while (r != NULL && running.n < max_running)
	{
		HttpRequest *next = r->next;
		MemoryContext old;
		int			timeout;

		/* a slow route's requests wait while it has its share running */
		if (count_route(&running, r->route.id) >= cap)
		{
			prev = r;
			r = next;
			continue;
		}
		list_unlink(&waiting, prev, r);
		old = MemoryContextSwitchTo(r->cxt);
		timeout = request_timeout(r);
		if (timeout == 0)
		{
			publisher_set_outcome(&r->item, PUBLISH_RETRY,
								  "not sent: the claim's lease (txoutbox.lock_timeout) would end before "
								  "the request could; %d requests were ahead of it", running.n + waiting.n);
			r->item.retry_after_ms = 0;
			r->item.not_sent = true;
			list_push(&done, r);
		}
		else if (send_request(r, timeout))
			list_push(&running, r);
		else
		{
			release_request(r);
			list_push(&done, r);
		}
		MemoryContextSwitchTo(old);
		r = next;
	}
}

/*
 * Move requests along: send what fits, let curl work, move finished ones to
 * done.  Waits up to wait_ms for one to finish while none did, but not past
 * the process latch being set (a commit wants a dispatch round).  Checks
 * for interrupts, so SIGTERM ends the worker promptly mid-request.
 */
static void
pump(long wait_ms, bool wake_on_latch)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	int			done_before = done.n;

	for (;;)
	{
		int			still_running;
		int			queued;
		CURLMsg    *m;
		CURLMcode	mc;
		long		left;

		send_waiting();
		mc = curl_multi_perform(http_multi, &still_running);
		if (mc != CURLM_OK)
			elog(ERROR, "txoutbox: curl_multi_perform failed: %s", curl_multi_strerror(mc));
		while ((m = curl_multi_info_read(http_multi, &queued)) != NULL)
		{
			HttpRequest *r = NULL;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &r);
			complete_request(r, m->data.result);
			list_remove(&running, r);
			list_push(&done, r);
		}
		/* a freed slot may let a waiting request go at once */
		if (done.n > done_before && waiting.n > 0)
			send_waiting();
		CHECK_FOR_INTERRUPTS();

		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		if (done.n > done_before || running.n == 0 || left <= 0 ||
			(wake_on_latch && MyLatch->is_set))
			return;
		mc = curl_multi_poll(http_multi, NULL, 0,
							 (int) Min(left, wake_on_latch ? HTTP_LATCH_CHECK_MS : HTTP_POLL_MS), NULL);
		if (mc != CURLM_OK)
			elog(ERROR, "txoutbox: curl_multi_poll failed: %s", curl_multi_strerror(mc));
	}
}

/* Drop the requests dispatch() was waiting for (it is ending in an ERROR). */
static void
drop_sync_requests(void)
{
	RequestList *lists[] = {&waiting, &running, &done};
	int			i;

	for (i = 0; i < lengthof(lists); i++)
	{
		HttpRequest *prev = NULL;
		HttpRequest *r = lists[i]->head;

		while (r)
		{
			HttpRequest *next = r->next;

			if (r->sync)
			{
				list_unlink(lists[i], prev, r);
				free_request(r);
			}
			else
				prev = r;
			r = next;
		}
	}
}

/*
 * Hand over one request per item.  In the worker (no transaction open) the
 * items are left PUBLISH_IN_FLIGHT and their outcomes come from
 * http_collect(), in this round or a later one.  Up to
 * txoutbox.http_max_concurrency requests are in flight at once, at most
 * three quarters of them for one route, so a hanging endpoint delays only
 * its own messages.  No request may run past its claim's lease, less a
 * margin to record the outcome (another dispatcher could otherwise claim
 * and send the message again): a request that would is given a shorter
 * timeout, or when its turn comes too late, is not sent and is released for
 * an immediate retry.
 *
 * In dispatch() (in a transaction: the caller's locks hold the messages, so
 * no deadline) every request is finished before returning.  Only an
 * interrupt or running out of memory throws.
 */
static void
http_publish(PublishItem *items, int n)
{
	bool		sync = IsTransactionState();
	HttpRequest **reqs;
	int			max_running;
	int			i;

	if (n == 0)
		return;
	http_init();
	max_running = Max(txoutbox_http_max_concurrency, 1);
	curl_multi_setopt(http_multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) max_running);
	curl_multi_setopt(http_multi, CURLMOPT_MAXCONNECTS, (long) max_running);

	reqs = palloc0(sizeof(HttpRequest *) * n);
	for (i = 0; i < n; i++)
	{
		TimestampTz deadline = 0;

		if (!sync)
		{
			int64		lease = txoutbox_lock_timeout_ms;

			deadline = TimestampTzPlusMilliseconds(items[i].msg->lease_until,
												   -Min(lease / 10, HTTP_LEASE_MARGIN_MS));
		}
		reqs[i] = build_request(&items[i], deadline);
		if (reqs[i] == NULL)
			continue;			/* its outcome is set */
		reqs[i]->sync = sync;
		list_push(&waiting, reqs[i]);
		items[i].outcome = PUBLISH_IN_FLIGHT;
		items[i].error = NULL;
	}

	if (!sync)
	{
		pump(0, false);
		pfree(reqs);
		return;
	}

	PG_TRY();
	{
		bool		all_done;

		do
		{
			pump(HTTP_POLL_MS, false);
			all_done = true;
			for (i = 0; i < n && all_done; i++)
				if (reqs[i] && reqs[i]->item.outcome == PUBLISH_IN_FLIGHT)
					all_done = false;
		} while (!all_done);
	}
	PG_CATCH();
	{
		drop_sync_requests();
		PG_RE_THROW();
	}
	PG_END_TRY();

	for (i = 0; i < n; i++)
	{
		HttpRequest *r = reqs[i];

		if (r == NULL)
			continue;
		items[i].outcome = r->item.outcome;
		items[i].error = r->item.error ? pstrdup(r->item.error) : NULL;
		items[i].retry_after_ms = r->item.retry_after_ms;
		items[i].not_sent = r->item.not_sent;
		list_remove(&done, r);
		free_request(r);
	}
	pfree(reqs);
}

/*
 * The items whose requests finished since the last call (see Publisher):
 * an array in the caller's memory context whose msg and route stay valid
 * until the next call.
 */
static int
http_collect(PublishItem **items, long wait_ms)
{
	HttpRequest *r;
	int			n = 0;

	while ((r = collected.head) != NULL)
	{
		list_unlink(&collected, NULL, r);
		free_request(r);
	}
	*items = NULL;
	if (http_multi == NULL)
		return 0;
	if (waiting.n > 0 || running.n > 0)
		pump(wait_ms, wait_ms > 0);
	if (done.n == 0)
		return 0;
	*items = palloc(sizeof(PublishItem) * done.n);
	while ((r = done.head) != NULL)
	{
		list_unlink(&done, NULL, r);
		(*items)[n++] = r->item;
		list_push(&collected, r);
	}
	return n;
}

/* Requests handed over and not yet collected. */
static int
http_in_flight(void)
{
	return waiting.n + running.n + done.n;
}

/*
 * How many more requests route_id may take now.  None while it has
 * txoutbox.http_max_concurrency requests waiting or running, so a slow route
 * is not claimed from; otherwise up to HTTP_QUEUE_FACTOR times that many in
 * all (one claim's worth: cheaper than many small rounds).  The dispatcher
 * leases no more than this and leaves the rest unclaimed.
 */
static int
http_capacity(int64 route_id)
{
	int			have = count_route(&waiting, route_id) + count_route(&running, route_id);
	int			max_running = Max(txoutbox_http_max_concurrency, 1);

	if (have >= max_running)
		return 0;
	return HTTP_QUEUE_FACTOR * max_running - have;
}

const Publisher http_publisher = {
	.name = "http",
	.transactional = false,
	.parse_config = http_parse_config,
	.publish = http_publish,
	.collect = http_collect,
	.in_flight = http_in_flight,
	.capacity = http_capacity,
};
