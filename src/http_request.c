/*-------------------------------------------------------------------------
 *
 * http_request.c
 *	  The webhook request of a message: its body (the payload, or the
 *	  envelope with "body": "envelope", or a CloudEvent with "body":
 *	  "cloudevents", sent as application/cloudevents+json) and its headers, signed the Standard
 *	  Webhooks way (webhook-id, webhook-timestamp, webhook-signature: v1,
 *	  base64 HMAC-SHA256 of "id.timestamp.body" with the route's secret).
 *
 * Headers are sent in this order of precedence: the message's over the
 * route's over ours (Content-Type, User-Agent, X-Correlation-Id), except
 * the reserved ones, which neither may set.  A message header that cannot
 * be sent fails the message (retrying would not help); nothing here names
 * a header value, the secret or the signature in an error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "common/base64.h"
#include "common/hmac.h"
#include "utils/builtins.h"
#include "utils/resowner.h"

#include "http.h"
#include "pg_compat.h"
#include "settings.h"

#define HMAC_SHA256_LEN			32

/* the HMAC code registers its OpenSSL contexts with a resource owner */
static ResourceOwner sign_resowner = NULL;

/* base64(HMAC-SHA256(key, id "." ts "." body)) into out; false on failure. */
static bool
sign(const HttpRoute *route, const char *id, const char *ts, const char *body,
	 size_t bodylen, char *out, int outlen)
{
	ResourceOwner save = CurrentResourceOwner;
	uint8		mac[HMAC_SHA256_LEN];
	volatile bool ok = false;
	int			len;

	if (sign_resowner == NULL)
		sign_resowner = ResourceOwnerCreate(NULL, "txoutbox http signing");
	CurrentResourceOwner = sign_resowner;
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
		problem = http_header_problem(name, strlen(name), val.val.string.val, val.val.string.len);
		if (problem)
			return psprintf("message header \"%s\" %s", name, problem);
		if (http_header_is_reserved(name))
			return psprintf("message header \"%s\" cannot be set by a message", name);
		header_set(h, name, pnstrdup(val.val.string.val, val.val.string.len));
	}
	return NULL;
}

/*
 * NetTransport.prepare: build req's body and header list from item, in the
 * current memory context (the request's).  Returns false, with the item's
 * outcome set on req, when the message cannot be sent.
 */
bool
http_request_prepare(NetRequest *req, const PublishItem *item)
{
	HttpRequest *r = (HttpRequest *) req;
	const OutboxMessage *msg = item->msg;
	const HttpRoute *route = (const HttpRoute *) item->route->parsed;
	StringInfoData body;
	HeaderList	h = {0};
	char		ts[32];
	char	   *problem;
	int			i;

	r->url = pstrdup(route->url);
	r->method = route->method;
	r->cfg_timeout_ms = route->timeout_ms > 0 ? route->timeout_ms : txoutbox_http_timeout_ms;

	initStringInfo(&body);
	publisher_build_body(&body, msg, route->body);
	r->body = body.data;
	r->body_len = body.len;

	snprintf(ts, sizeof(ts), "%lld", (long long) time(NULL));
	header_set(&h, "Content-Type", publisher_body_content_type(route->body));
	header_set(&h, "User-Agent", HTTP_USER_AGENT);
	header_set(&h, "webhook-id", req->msg.id_str);
	header_set(&h, "webhook-timestamp", pstrdup(ts));
	if (route->key)
	{
		char		sig[64];

		if (!sign(route, msg->id_str, ts, body.data, body.len, sig, sizeof(sig)))
		{
			publisher_set_outcome(&req->item, PUBLISH_RETRY, "could not compute the webhook signature");
			return false;
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
		publisher_set_outcome(&req->item, PUBLISH_FAILED, "%s", problem);
		return false;
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
			publisher_set_outcome(&req->item, PUBLISH_RETRY, "out of memory building the request");
			return false;
		}
		r->headers = next;
	}
	return true;
}

/* Free what libcurl allocated for r (its header list). */
void
http_request_release(HttpRequest *r)
{
	if (r->headers)
	{
		curl_slist_free_all(r->headers);
		r->headers = NULL;
	}
}
