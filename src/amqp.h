/*-------------------------------------------------------------------------
 *
 * amqp.h
 *	  The amqp publisher's parts: a route's config and the message built for
 *	  it (publish_amqp.c), and the RabbitMQ transport on the network
 *	  machinery (amqp_transport.c): connections, channels, publisher
 *	  confirms.
 *
 * rabbitmq-c versions: Debian 12 has 0.11, Debian 13 0.15, unstable 0.18.
 * Their differences that matter here are handled in this header and in
 * amqp_transport.c, each at an #if that says which version changed what.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_AMQP_H
#define TXOUTBOX_AMQP_H

/*
 * rabbitmq-c 0.12 moved its headers to rabbitmq-c/ and left <amqp.h> as a
 * wrapper that emits #warning (an error under -Werror).  The Makefile
 * defines TXOUTBOX_AMQP_HEADERS_IN_DIR when <rabbitmq-c/amqp.h> exists.
 */
#ifdef TXOUTBOX_AMQP_HEADERS_IN_DIR
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif

#include "netpub.h"

#define AMQP_DEFAULT_TIMEOUT_MS		10000	/* confirms can take seconds */
#define AMQP_MAX_TIMEOUT_MS			3600000
#define AMQP_DEFAULT_MAX_IN_FLIGHT	1024
#define AMQP_MAX_MAX_IN_FLIGHT		65535
#define AMQP_SHORTSTR_MAX			255 /* names, ids, header names */

/* A route's config, parsed (publish_amqp.c). */
typedef struct AmqpRoute
{
	char	   *url;			/* as configured: the connection's key */
	char	   *shown_url;		/* the url with its password as "***" */
	char	   *host;			/* from the url, percent-decoded */
	int			port;
	char	   *vhost;
	char	   *user;
	char	   *password;
	char	   *exchange;		/* templates ({topic}, ...) */
	char	   *routing_key;
	bool		persistent;
	bool		mandatory;
	int			timeout_ms;
	int			max_in_flight;
	PublishBody body;
	int			nheaders;
	char	  **header_names;
	char	  **header_values;
} AmqpRoute;

struct AmqpConn;
struct AmqpChannel;

/*
 * One message on its way: the NetRequest netpub tracks, the publish built
 * by prepare (all in the request's memory), and the transport's state.
 */
typedef struct AmqpRequest
{
	NetRequest	base;
	/* built by amqp_request_prepare */
	struct AmqpConn *conn;		/* the connection of its url (it holds it) */
	int64		route_id;		/* its channel on conn */
	char	   *exchange;
	char	   *routing_key;
	bool		mandatory;
	int			cfg_timeout_ms;
	amqp_basic_properties_t props;	/* strings point into this request */
	amqp_table_entry_t *headers;
	char	   *body;
	size_t		body_len;
	size_t		props_len;		/* encoded size of the properties */
	size_t		wire_len;		/* what it takes on the wire, about */
	/* the transport's */
	dlist_node	node;			/* in its channel's pending or unconfirmed list */
	struct AmqpChannel *chan;	/* NULL: in no list */
	bool		sent;			/* published: in unconfirmed, tag valid */
	bool		returned;		/* basic.return seen (unroutable) */
	uint64		tag;			/* delivery tag on chan */
} AmqpRequest;

/* publish_amqp.c */
extern void *amqp_parse_config(Jsonb *config);
extern bool amqp_request_prepare(NetRequest *req, const PublishItem *item);

/* amqp_transport.c */
extern const NetTransport amqp_transport;
extern struct AmqpConn *amqp_connection_for(const AmqpRoute *ar);
extern int	amqp_route_capacity(const OutboxRoute *route, const AmqpRoute *ar);

#endif							/* TXOUTBOX_AMQP_H */
