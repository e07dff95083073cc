/*-------------------------------------------------------------------------
 *
 * nats.h
 *	  The nats publisher's parts: a route's config and the message built for
 *	  it (publish_nats.c), and the transport on the network machinery
 *	  (nats_transport.c: connections, libnats' threads, PubAcks).
 *
 * Our functions are named natspub_*: libnats owns nats_*, natsConn* and js_*
 * in the one symbol space.  This header never includes libnats' own
 * (<nats/nats.h>), so publish_nats.c builds without it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_NATS_H
#define TXOUTBOX_NATS_H

#include "lib/ilist.h"

#include "netpub.h"

#define NATS_DEFAULT_PORT			4222
#define NATS_DEFAULT_TIMEOUT_MS		5000
#define NATS_MAX_TIMEOUT_MS			3600000
#define NATS_DEFAULT_MAX_IN_FLIGHT	1024
#define NATS_MAX_MAX_IN_FLIGHT		65536
#define NATS_MAX_SUBJECT_LEN		1024	/* bytes, after the placeholders */

/* A route's config, parsed (publish_nats.c). */
typedef struct NatsRoute
{
	char	   *server;			/* "nats://host:port": no user info */
	char	   *shown;			/* the url as errors show it: secret
								 * replaced by "***" */
	char	   *user;			/* decoded user info, or NULL */
	char	   *password;
	char	   *token;
	char	   *subject;		/* template, with placeholders */
	int			timeout_ms;
	PublishBody body;
	int			max_in_flight;
	int			nheaders;
	char	  **header_names;
	char	  **header_values;
} NatsRoute;

struct NatsConn;

/*
 * One message on its way: the NetRequest netpub tracks, what
 * publish_nats.c built (subject, body, headers), and what the transport
 * keeps while it runs.
 */
typedef struct NatsRequest
{
	NetRequest	base;
	struct NatsConn *conn;
	char	   *subject;
	char	   *body;
	int			body_len;
	int			nheaders;		/* ours, the route's and the message's */
	char	  **header_names;
	char	  **header_values;
	int			cfg_timeout_ms; /* the route's */
	/* while running */
	int			timeout_ms;		/* this one's (may be cut by the lease) */
	TimestampTz ack_by;			/* PubAck expected by then */
	bool		parked;			/* waiting for its connection to come up */
	bool		in_library;		/* libnats holds its message (lib_msg) */
	dlist_node	conn_node;		/* in its connection's parked or
								 * in_library list */
	void	   *lib_msg;		/* the natsMsg published, while in_library */
} NatsRequest;

/* publish_nats.c */
extern const char *natspub_subject_problem(const char *subject);
extern bool natspub_request_prepare(NetRequest *req, const PublishItem *item);

/* nats_transport.c */
extern const NetTransport natspub_transport;
extern struct NatsConn *natspub_conn_for(const NatsRoute *route);
extern int	natspub_conn_capacity(struct NatsConn *conn, const OutboxRoute *route,
								  int max_in_flight);
extern void natspub_take_results(void);

#endif							/* TXOUTBOX_NATS_H */
