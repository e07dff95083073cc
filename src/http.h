/*-------------------------------------------------------------------------
 *
 * http.h
 *	  The http publisher's parts: a route's config (http_config.c), the
 *	  request built for a message (http_request.c), and the libcurl
 *	  transport on the network machinery (http_transport.c); glued into a
 *	  Publisher in publish_http.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_HTTP_H
#define TXOUTBOX_HTTP_H

#include <curl/curl.h>

#include "netpub.h"

#define HTTP_MAX_TIMEOUT_MS		3600000
#define HTTP_CONNECT_TIMEOUT_MS 10000	/* at most; never above timeout_ms */
#define HTTP_RESPONSE_CAP		1024	/* response body bytes kept */
#define HTTP_USER_AGENT			"txoutbox/0.2"

/* A route's config, parsed (http_config.c). */
typedef struct HttpRoute
{
	char	   *url;			/* normalised by curl_url */
	const char *method;			/* POST, PUT or PATCH */
	int			timeout_ms;		/* 0: txoutbox.http_timeout */
	PublishBody body;			/* payload, envelope or cloudevents */
	uint8	   *key;			/* decoded secret, or NULL */
	int			keylen;
	int			nheaders;
	char	  **header_names;
	char	  **header_values;
} HttpRoute;

/*
 * One webhook request: the NetRequest netpub tracks, what http_request.c
 * built (url, body, header list), and what the transport keeps while it
 * runs.  curl callbacks write only into the fixed buffers.
 */
typedef struct HttpRequest
{
	NetRequest	base;
	char	   *url;
	const char *method;
	int			cfg_timeout_ms; /* the route's timeout */
	char	   *body;
	size_t		body_len;
	struct curl_slist *headers; /* curl's allocation: freed by the transport */
	/* while running */
	CURL	   *easy;
	int			timeout_ms;		/* this request's (may be cut by the lease) */
	int			route_timeout_ms;	/* the route's, when the lease cut it */
	bool		got_status;		/* a status line arrived */
	char		errbuf[CURL_ERROR_SIZE];
	char		response[HTTP_RESPONSE_CAP];
	size_t		response_len;
	char		retry_after[64];
} HttpRequest;

/* http_config.c */
extern void *http_parse_config(Jsonb *config);
extern bool http_header_is_reserved(const char *name);
extern const char *http_header_problem(const char *name, int namelen,
									   const char *value, int valuelen);

/* http_request.c */
extern bool http_request_prepare(NetRequest *req, const PublishItem *item);
extern void http_request_release(HttpRequest *r);

/* http_transport.c */
extern const NetTransport http_transport;

#endif							/* TXOUTBOX_HTTP_H */
