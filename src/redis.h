/*-------------------------------------------------------------------------
 *
 * redis.h
 *	  The redis publisher's parts: a route's config and the XADD built for
 *	  a message (publish_redis.c), and the hiredis transport on the network
 *	  machinery: connections, pipelines, replies (redis_transport.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_REDIS_H
#define TXOUTBOX_REDIS_H

#include "lib/ilist.h"

#include "netpub.h"

#define REDIS_DEFAULT_PORT			6379
#define REDIS_DEFAULT_TIMEOUT_MS	5000
#define REDIS_MAX_TIMEOUT_MS		3600000
#define REDIS_DEFAULT_MAX_IN_FLIGHT 1000
#define REDIS_MAX_MAX_IN_FLIGHT		100000
#define REDIS_CONNECT_TIMEOUT_MS	10000	/* at most; never above timeout_ms */
#define REDIS_PIPELINE_BYTES		(4 * 1024 * 1024)	/* most command bytes
														 * awaiting replies on
														 * one connection */

/* Where a redis server is, and who we are to it (one connection each). */
typedef struct RedisServer
{
	char	   *host;			/* a name, or an IPv4/IPv6 address */
	int			port;
	char	   *user;			/* ACL user for AUTH, or NULL */
	char	   *password;		/* or NULL: no AUTH */
	int			db;				/* SELECT'ed when not 0 */
	char	   *shown;			/* the url with its password as "***" */
} RedisServer;

/* A route's config, parsed (publish_redis.c). */
typedef struct RedisRoute
{
	RedisServer server;
	char	   *stream;			/* template: {topic}, {message_key}, {tenant_id} */
	int64		maxlen;			/* MAXLEN ~ this; 0: no trimming */
	int			timeout_ms;
	int			max_in_flight;
	PublishBody body;
	int			nheaders;		/* the route's "headers": */
	char	  **header_names;
	char	  **header_members; /* each as a JSON member: "name":"value" */
} RedisRoute;

struct RedisConn;

/* Where a request is in its connection (redis_transport.c). */
typedef enum RedisRequestPlace
{
	REDIS_REQ_NOWHERE,
	REDIS_REQ_QUEUED,			/* started, waiting for the connection or for
								 * room in its pipeline */
	REDIS_REQ_PIPELINED,		/* its XADD is in the pipeline: a reply is due */
	REDIS_REQ_FINISHING			/* its connection was dropped while netpub
								 * was walking its requests: finished at the
								 * next timer */
} RedisRequestPlace;

/*
 * One XADD: the NetRequest netpub tracks, the command built for it
 * (publish_redis.c), and its place in its connection (redis_transport.c).
 */
typedef struct RedisRequest
{
	NetRequest	base;
	struct RedisConn *conn;
	char	   *command;		/* the XADD in RESP, until it is pipelined */
	size_t		command_len;
	char	   *stream;			/* its stream, for error texts */
	int			cfg_timeout_ms; /* the route's */
	/* in the transport */
	RedisRequestPlace place;
	dlist_node	conn_node;		/* in its connection's queue or pipeline, or
								 * in the finishing list */
	uint64		first_byte;		/* offset of its command in the connection's
								 * output stream */
	PublishOutcome finish_outcome;	/* REDIS_REQ_FINISHING: what it gets */
	bool		finish_unsent;
	char	   *finish_error;
} RedisRequest;

/* publish_redis.c */
extern void *redis_parse_config(Jsonb *config);
extern bool redis_prepare(NetRequest *req, const PublishItem *item);
extern void redis_append_arg(StringInfo buf, const char *data, size_t len);

/* redis_transport.c */
extern const NetTransport redis_transport;
extern struct RedisConn *redis_conn_get(const RedisServer *server);
extern int	redis_conn_limit(const RedisServer *server, int max_in_flight);

#endif							/* TXOUTBOX_REDIS_H */
