/*-------------------------------------------------------------------------
 *
 * http_config.c
 *	  An http route's config: {"url", "method", "headers", "timeout_ms",
 *	  "secret", "body"}, checked when the route is added and parsed every
 *	  round (http_parse_config).
 *
 * Only http and https URLs are accepted; when txoutbox.http_allowed_hosts
 * is set, the URL's host must be one of its entries (a name, or
 * "*.example.com" for any subdomain of example.com).  Header names must be
 * HTTP tokens and values may not break a line; the reserved headers
 * (webhook-*, X-Txoutbox-*, and those that frame the request) are
 * txoutbox's own.  Errors name the field that is wrong, never a secret or a
 * header value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "mb/pg_wchar.h"

#include "http.h"
#include "pg_compat.h"
#include "publisher.h"
#include "settings.h"

#define HTTP_MAX_SECRET_BYTES	1024

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

/* Is c a token character of RFC 9110 (allowed in a header name)? */
static bool
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Is name a header txoutbox sets itself or that would break the framing? */
bool
http_header_is_reserved(const char *name)
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
const char *
http_header_problem(const char *name, int namelen, const char *value, int valuelen)
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
	int			i;

	route->nheaders = jsonb_config_headers(config, &route->header_names, &route->header_values);
	for (i = 0; i < route->nheaders; i++)
	{
		const char *name = route->header_names[i];
		const char *value = route->header_values[i];
		const char *problem = http_header_problem(name, strlen(name), value, strlen(value));

		if (problem)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" in config of an http route %s", name, problem)));
		if (http_header_is_reserved(name))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("header \"%s\" cannot be set by an http route", name),
					 errdetail("txoutbox sets it itself, or it would break the request's framing.")));
	}
}

/* Check an http route's config and return its HttpRoute. */
void *
http_parse_config(Jsonb *config)
{
	HttpRoute  *route = palloc0(sizeof(HttpRoute));
	char	   *url;
	char	   *method;
	char	   *secret;
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

	route->body = publisher_config_body(config, "http");
	return route;
}
