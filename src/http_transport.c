/*-------------------------------------------------------------------------
 *
 * http_transport.c
 *	  The http publisher's transport: webhook requests sent with libcurl's
 *	  multi interface, driven by the network machinery's wait (netpub.c)
 *	  through curl's socket and timer callbacks, so the worker sleeps until a
 *	  socket is ready, a curl timer is due, or its latch is set.
 *
 * One CURLM handle lives for the whole process, so its connection cache
 * (and DNS cache) keeps connections alive across messages and rounds; it
 * never holds more than txoutbox.http_max_concurrency connections, and at
 * most three quarters of that many requests of one route run at once.
 * Redirects are not followed, proxies from the environment are not used
 * (the worker would otherwise inherit the postmaster's http_proxy), and
 * "Expect: 100-continue" is never sent.  No request runs past its claim's
 * lease: netpub gives start() the time left, and a route's timeout_ms
 * longer than that is cut to it.
 *
 * curl callbacks never call into PostgreSQL beyond netpub_watch and
 * netpub_set_timer (which neither allocate nor raise): they write into the
 * request's fixed buffers.  A finished transfer is classified with the
 * request still running in netpub's books; if that throws, the request is
 * finished as a retry before the error goes on, so no slot is lost.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "http.h"
#include "settings.h"

#define HTTP_ERROR_BODY			200 /* response bytes shown in last_error */

static CURLM *http_multi = NULL;
static long http_multi_connections = 0; /* the connection cap set on it */

/* CURLMOPT_SOCKETFUNCTION: watch (or stop watching) a socket of curl's. */
static int
on_socket_change(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	uint32		events = 0;

	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= WL_SOCKET_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= WL_SOCKET_WRITEABLE;
	netpub_watch(&http_transport, (pgsocket) s, events);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants to be called back (-1: never). */
static int
on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
	netpub_set_timer(&http_transport, timeout_ms < 0 ? 0 :
					 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms));
	return 0;
}

/* Set up libcurl and the shared multi handle once per process. */
static void
http_init(void)
{
	long		connections = Max(txoutbox_http_max_concurrency, 1);

	if (http_multi == NULL)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialize libcurl")));
		http_multi = curl_multi_init();
		if (http_multi == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl multi handle")));
		curl_multi_setopt(http_multi, CURLMOPT_SOCKETFUNCTION, on_socket_change);
		curl_multi_setopt(http_multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
	}
	if (connections != http_multi_connections)
	{
		curl_multi_setopt(http_multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, connections);
		curl_multi_setopt(http_multi, CURLMOPT_MAXCONNECTS, connections);
		http_multi_connections = connections;
	}
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

/*
 * The outcome of a finished transfer, from curl's result and the status:
 * 2xx succeeds; curl errors (connection refused, timeouts, reset, an answer
 * that is not HTTP) and 408, 425, 429 and 5xx are retried, with
 * Retry-After (seconds or an HTTP date) as the delay when given; a request
 * libcurl refused before anything was sent, and any other status, fail the
 * message.  *error names the status and the start of the response body, or
 * curl's error and the phase that timed out; never the URL, the secret or
 * a header value.
 */
static PublishOutcome
classify_result(HttpRequest *r, CURLcode result, int64 *retry_after_ms, char **error)
{
	long		status = 0;
	char	   *excerpt;

	*retry_after_ms = -1;
	*error = NULL;
	if (result != CURLE_OK)
	{
		if (result == CURLE_OPERATION_TIMEDOUT)
		{
			*error = describe_timeout(r);
			return PUBLISH_RETRY;
		}
		if (result == CURLE_URL_MALFORMAT ||
			(result == CURLE_UNSUPPORTED_PROTOCOL && !request_was_sent(r)))
		{
			*error = psprintf("request refused by libcurl: %s",
							  r->errbuf[0] ? r->errbuf : curl_easy_strerror(result));
			return PUBLISH_FAILED;
		}
		/* anything else is worth another try (libcurl may call an answer
		 * that is not HTTP an unsupported protocol too) */
		*error = pstrdup(r->errbuf[0] ? r->errbuf : curl_easy_strerror(result));
		return PUBLISH_RETRY;
	}

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 200 && status <= 299)
		return PUBLISH_SUCCEEDED;
	excerpt = response_excerpt(r);
	if (status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599))
	{
		*error = psprintf("HTTP %ld%s%s", status, excerpt[0] ? ": " : "", excerpt);
		*retry_after_ms = parse_retry_after(r->retry_after);
		return PUBLISH_RETRY;
	}
	*error = psprintf("HTTP %ld%s%s%s", status,
					  (status >= 300 && status <= 399) ? " (redirects are not followed)" : "",
					  excerpt[0] ? ": " : "", excerpt);
	return PUBLISH_FAILED;
}

/* Take r's transfer out of the multi handle and free curl's handle. */
static void
release_transfer(HttpRequest *r)
{
	if (r->easy)
	{
		curl_multi_remove_handle(http_multi, r->easy);
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
	}
}

/*
 * NetTransport.start: send r within budget_ms (its lease).  The route's
 * timeout applies, cut to the budget when that is shorter (the error of a
 * timeout then says so).
 */
static bool
http_start(NetRequest *req, int budget_ms)
{
	HttpRequest *r = (HttpRequest *) req;
	CURL	   *easy;

	http_init();
	r->timeout_ms = r->cfg_timeout_ms;
	if (budget_ms < r->timeout_ms)
	{
		r->route_timeout_ms = r->timeout_ms;
		r->timeout_ms = budget_ms;
	}
	easy = curl_easy_init();
	if (easy == NULL)
	{
		netpub_finish(req, PUBLISH_RETRY, -1, "could not create a libcurl handle");
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
		netpub_finish(req, PUBLISH_RETRY, -1, "could not set up the libcurl request");
		return false;
	}
	return true;
}

/*
 * Finish r's completed transfer.  If classifying it throws (out of memory),
 * r is still finished, as a retry, before the error goes on.
 */
static void
complete_transfer(HttpRequest *r, CURLcode result)
{
	PG_TRY();
	{
		int64		retry_after_ms;
		char	   *error;
		PublishOutcome outcome;
		MemoryContext old = MemoryContextSwitchTo(r->base.cxt);

		settings_inject_fault("network_completion");
		outcome = classify_result(r, result, &retry_after_ms, &error);
		MemoryContextSwitchTo(old);
		release_transfer(r);
		http_request_release(r);
		if (error)
			netpub_finish(&r->base, outcome, retry_after_ms, "%s", error);
		else
			netpub_finish(&r->base, outcome, retry_after_ms, NULL);
	}
	PG_CATCH();
	{
		release_transfer(r);
		http_request_release(r);
		if (r->base.state == NETREQ_RUNNING)
			netpub_finish(&r->base, PUBLISH_RETRY, -1, "internal error while completing the request");
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Hand curl's finished transfers to netpub. */
static void
collect_completed(void)
{
	CURLMsg    *m;
	int			queued;

	while ((m = curl_multi_info_read(http_multi, &queued)) != NULL)
	{
		HttpRequest *r = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &r);
		complete_transfer(r, m->data.result);
	}
}

/* NetTransport.on_socket: curl's socket has events. */
static void
http_on_socket(pgsocket fd, uint32 events)
{
	int			still_running;
	int			flags = 0;
	CURLMcode	mc;

	if (events & WL_SOCKET_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & WL_SOCKET_WRITEABLE)
		flags |= CURL_CSELECT_OUT;
	mc = curl_multi_socket_action(http_multi, (curl_socket_t) fd, flags, &still_running);
	if (mc != CURLM_OK)
		elog(ERROR, "txoutbox: curl_multi_socket_action failed: %s", curl_multi_strerror(mc));
	collect_completed();
}

/* NetTransport.on_timer: curl's timer is due. */
static void
http_on_timer(void)
{
	int			still_running;
	CURLMcode	mc;

	if (http_multi == NULL)
		return;
	mc = curl_multi_socket_action(http_multi, CURL_SOCKET_TIMEOUT, 0, &still_running);
	if (mc != CURLM_OK)
		elog(ERROR, "txoutbox: curl_multi_socket_action failed: %s", curl_multi_strerror(mc));
	collect_completed();
}

/* NetTransport.abandon: stop a running transfer. */
static void
http_abandon(NetRequest *req)
{
	release_transfer((HttpRequest *) req);
}

/* NetTransport.release: free curl's allocations of a request. */
static void
http_release(NetRequest *req)
{
	release_transfer((HttpRequest *) req);
	http_request_release((HttpRequest *) req);
}

/* NetTransport.max_running: txoutbox.http_max_concurrency. */
static int
http_max_running(void)
{
	return Max(txoutbox_http_max_concurrency, 1);
}

const NetTransport http_transport = {
	.name = "http",
	.request_size = sizeof(HttpRequest),
	.max_running = http_max_running,
	.prepare = http_request_prepare,
	.start = http_start,
	.on_socket = http_on_socket,
	.on_timer = http_on_timer,
	.abandon = http_abandon,
	.release = http_release,
};
