/*-------------------------------------------------------------------------
 *
 * amqp_transport.c
 *	  The amqp publisher's transport: RabbitMQ connections driven by the
 *	  network machinery's wait (netpub.c), publishing with confirms.
 *
 * Everything runs on the worker's one thread: rabbitmq-c creates no
 * threads, and its socket is in netpub's WaitEventSet.  rabbitmq-c's own
 * connect and login block (up to their timeouts), so the transport does
 * both itself: a non-blocking connect(), then the AMQP handshake
 * (connection.start/start-ok, tune/tune-ok, open/open-ok) sent with
 * amqp_send_method and read frame by frame with
 * amqp_simple_wait_frame_noblock(zero timeout), as every later frame is.
 * Host names are resolved with getaddrinfo(), which may block on DNS: give
 * an IP address (or a name in /etc/hosts) where that matters.
 *
 * Connections: one per url, shared by the routes that name it, opened on
 * first use (the first message), kept across rounds, closed after
 * AMQP_IDLE_CLOSE_MS without use or when the process exits.  A lost
 * connection is opened again with a NetBackoff; while it is down or in
 * backoff capacity() is 0 for its routes (their messages wait in the
 * table), except one message per route while a connection attempt may be
 * made: that message opens the connection (and carries its error, not
 * sent, when it cannot).
 *
 * Channels: one per route on its connection, in confirm mode.  Delivery
 * tags count publishes per channel from 1; a basic.ack or basic.nack
 * (multiple or not) settles the unconfirmed messages up to its tag, oldest
 * first.  A channel closed by the broker (say, 404: the exchange does not
 * exist) takes every unconfirmed message on it with it, since the close
 * does not say which publish failed (and the broker drops what followed
 * it): they are all retried with the broker's reason, and a new channel
 * (a new number: a closed one is never reused) is opened for what comes
 * next.  A route's channel error does not touch other routes' messages.
 *
 * Unroutable messages: with "mandatory": true the broker returns a
 * message no queue is bound for (basic.return 312 NO_ROUTE, then a content
 * header carrying our message_id), then acks it.  Such a message is not a
 * success: it is retried, with a reason naming the exchange and routing
 * key, until its attempts run out and it is failed.
 *
 * Never blocking: amqp_basic_publish() writes every frame at once and, on
 * a full socket buffer, polls with no deadline (there is no publish
 * timeout in rabbitmq-c).  So a connection publishes only while its
 * unconfirmed bytes are below AMQP_WINDOW_BYTES and its socket polls
 * writable (otherwise netpub waits for WL_SOCKET_WRITEABLE), never while
 * the broker has blocked it (connection.blocked, a memory or disk alarm),
 * and never after nearly two heartbeats without data from the broker (see
 * connection_alive_for_send: rabbitmq-c 0.11 then waits in recv() forever).
 * Heartbeats (AMQP_HEARTBEAT_S) are sent and checked by the library inside
 * the frame reads that a timer does every AMQP_TICK_MS; a session's
 * connection (dispatch()) has none, since nothing reads it between calls.
 *
 * Timeouts: a message's timeout_ms (cut to its lease) is netpub's: a
 * published message not confirmed by then is retried (netpub calls
 * abandon; a late ack is then ignored, and the retry may be a duplicate).
 * After such a timeout the connection takes no new messages (capacity 0)
 * until the broker confirms something again or a backoff passes, so a
 * stalled broker does not burn attempts faster than the backoff.  A
 * message that was never published (it waited for the connection, the
 * window or the broker's unblock) is given back unsent when netpub would
 * time it out (the transport's timer runs first).
 *
 * Callers: netpub calls start/on_socket/on_timer with no transaction open
 * (or in dispatch()'s); capacity() runs in a transaction and does no I/O.
 * Nothing here throws once a request is in hand, except running out of
 * PostgreSQL memory when a connection or channel is first made.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifdef TXOUTBOX_WITH_AMQP

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "amqp.h"
#include "pg_compat.h"

#define AMQP_HEARTBEAT_S		10	/* proposed; the broker may lower it */
#define AMQP_TICK_MS			3000	/* frame reads while idle: heartbeats */
#define AMQP_SILENCE_MARGIN_MS	2000	/* before the library's 2 x heartbeat */
#define AMQP_FRAME_MAX			131072
#define AMQP_CONNECT_TIMEOUT_MS 5000	/* TCP connect and handshake */
#define AMQP_WINDOW_BYTES		(1024 * 1024)	/* unconfirmed, per connection */
#define AMQP_IDLE_CLOSE_MS		60000
#define AMQP_ERROR_LEN			512

/*
 * The frame type rabbitmq-c gives the broker's protocol header (its answer
 * to a version it does not speak): AMQP_PSEUDOFRAME_PROTOCOL_HEADER of its
 * private amqp_private.h, 'A' in every version.
 */
#define FRAME_PROTOCOL_HEADER	'A'

typedef enum ConnState
{
	CONN_IDLE,					/* no connection (maybe in backoff) */
	CONN_CONNECTING,			/* TCP connect under way */
	CONN_HANDSHAKE,				/* AMQP handshake under way */
	CONN_READY
} ConnState;

typedef enum HandshakeStep
{
	HS_START,					/* waiting for connection.start */
	HS_TUNE,					/* waiting for connection.tune */
	HS_OPEN						/* waiting for connection.open-ok */
} HandshakeStep;

typedef enum ChanState
{
	CHAN_CLOSED,				/* not open (opened when it has messages) */
	CHAN_OPENING,				/* channel.open sent */
	CHAN_SELECTING,				/* confirm.select sent */
	CHAN_READY
} ChanState;

/* A route's channel on a connection. */
typedef struct AmqpChannel
{
	struct AmqpChannel *next;
	struct AmqpConn *conn;
	int64		route_id;
	ChanState	state;
	amqp_channel_t number;
	uint64		next_tag;		/* of the next publish */
	dlist_head	pending;		/* not published yet, oldest first */
	dlist_head	unconfirmed;	/* published, in tag order */
	int			nunconfirmed;
	bool		held;			/* capacity() said 0: the route is full */
	int			limit;			/* its max_in_flight, when held */
} AmqpChannel;

/* A connection to a broker: one per url. */
typedef struct AmqpConn
{
	struct AmqpConn *next;
	char	   *url;			/* as configured (the key) */
	char	   *shown_url;		/* its password as "***" */
	char	   *host;
	int			port;
	char	   *vhost;
	char	   *user;
	char	   *password;
	int			refs;			/* requests that point to it */
	TimestampTz last_used;

	ConnState	state;
	HandshakeStep step;
	amqp_connection_state_t amqp;	/* from the handshake on */
	pgsocket	fd;
	uint32		watched;		/* events asked of netpub */
	bool		want_write;		/* waiting for room in the socket */
	struct addrinfo *addrs;		/* while connecting */
	struct addrinfo *addr;		/* the one being tried */
	TimestampTz connect_deadline;

	NetBackoff	backoff;		/* reconnecting */
	bool		down_logged;	/* the server log says it is down */
	char		error[AMQP_ERROR_LEN];	/* why it went down */

	NetBackoff	stall;			/* after a confirm timeout */
	bool		stalled;
	bool		blocked;		/* connection.blocked */
	char		blocked_reason[128];

	int			heartbeat_s;
	int			channel_max;
	size_t		frame_max;
	TimestampTz last_rx;		/* data arrived from the broker */
	TimestampTz next_tick;
	bool		drain_soon;		/* the library holds frames it read itself */
	size_t		unconfirmed_bytes;
	TimestampTz pending_first;	/* no pending timeout before this (0: none) */
	size_t		max_message_bytes;	/* learned from the broker, 0: unknown */
	amqp_channel_t last_channel;
	AmqpChannel *channels;

	/* a basic.return being read (its method, header and body frames) */
	bool		ret_active;
	bool		ret_have_header;
	amqp_channel_t ret_channel;
	uint64		ret_body_left;
	char		ret_id[64];
} AmqpConn;

static MemoryContext amqp_cxt = NULL;
static AmqpConn *connections = NULL;
static bool exit_callback_registered = false;

static void connection_flush(AmqpConn *conn);
static void connection_drain(AmqpConn *conn);
static void schedule_timer(void);

/* ---- helpers ------------------------------------------------------------- */

/* How long ago t was, in ms (0 when in the future). */
static int64
ms_since(TimestampTz t, TimestampTz now)
{
	return now > t ? (now - t) / 1000 : 0;
}

/* text with the connection's password replaced, into buf (never throws). */
static void
redact_into(const AmqpConn *conn, const char *text, char *buf, size_t buflen)
{
	size_t		plen = conn->password ? strlen(conn->password) : 0;
	size_t		out = 0;
	const char *p = text;

	while (*p && out + 1 < buflen)
	{
		if (plen > 0 && strncmp(p, conn->password, plen) == 0)
		{
			const char *stars = "***";

			while (*stars && out + 1 < buflen)
				buf[out++] = *stars++;
			p += plen;
			continue;
		}
		buf[out++] = *p++;
	}
	buf[out] = '\0';
}

/* An amqp_bytes_t as a C string in buf (cut to fit; never throws). */
static const char *
bytes_str(amqp_bytes_t b, char *buf, size_t buflen)
{
	size_t		n = Min(b.len, buflen - 1);

	memcpy(buf, b.bytes, n);
	buf[n] = '\0';
	return buf;
}

/* Ask netpub for events on conn's socket. */
static void
connection_watch(AmqpConn *conn, uint32 events)
{
	if (conn->fd == PGINVALID_SOCKET || conn->watched == events)
		return;
	netpub_watch(&amqp_transport, conn->fd, events);
	conn->watched = events;
}

/* Does conn's socket poll readable (or writable) right now? */
static bool
socket_ready(const AmqpConn *conn, short what)
{
	struct pollfd pfd;

	pfd.fd = conn->fd;
	pfd.events = what;
	pfd.revents = 0;
	return poll(&pfd, 1, 0) > 0 && (pfd.revents & (what | POLLERR | POLLHUP)) != 0;
}

/* ---- requests ------------------------------------------------------------ */

/* Take r out of its channel's list. */
static void
request_unlink(AmqpRequest *r)
{
	AmqpChannel *chan = r->chan;

	if (chan == NULL)
		return;
	dlist_delete(&r->node);
	if (r->sent)
	{
		chan->nunconfirmed--;
		chan->conn->unconfirmed_bytes -= Min(chan->conn->unconfirmed_bytes, r->wire_len);
	}
	r->chan = NULL;
}

/* Finish r (published or not) with an outcome and an error text. */
static void
request_finish(AmqpRequest *r, PublishOutcome outcome, const char *error)
{
	request_unlink(r);
	if (error)
		netpub_finish(&r->base, outcome, -1, "%s", error);
	else
		netpub_finish(&r->base, outcome, -1, NULL);
}

/* Give r back unsent (it never reached the broker). */
static void
request_unsent(AmqpRequest *r, const char *error)
{
	request_unlink(r);
	netpub_finish_unsent(&r->base, "not sent: %s", error);
}

/* ---- connections --------------------------------------------------------- */

/* At process exit: close every connection, politely when the socket allows. */
static void
close_all_at_exit(int code, Datum arg)
{
	AmqpConn   *conn;

	for (conn = connections; conn; conn = conn->next)
	{
		if (conn->amqp)
		{
			if (conn->state == CONN_READY && socket_ready(conn, POLLOUT))
			{
				amqp_connection_close_t close;

				memset(&close, 0, sizeof(close));
				close.reply_code = AMQP_REPLY_SUCCESS;
				close.reply_text = amqp_cstring_bytes("txoutbox worker exiting");
				(void) amqp_send_method(conn->amqp, 0, AMQP_CONNECTION_CLOSE_METHOD, &close);
			}
			amqp_destroy_connection(conn->amqp);	/* closes the socket */
			conn->amqp = NULL;
		}
		else if (conn->fd != PGINVALID_SOCKET)
			close(conn->fd);
		conn->fd = PGINVALID_SOCKET;
	}
}

/* The connection of url, or NULL. */
static AmqpConn *
connection_lookup(const char *url)
{
	AmqpConn   *conn;

	for (conn = connections; conn; conn = conn->next)
		if (strcmp(conn->url, url) == 0)
			return conn;
	return NULL;
}

/*
 * The connection of a route's url, made (not connected) on first use; the
 * caller's request holds it (released in amqp_release).
 */
AmqpConn *
amqp_connection_for(const AmqpRoute *ar)
{
	AmqpConn   *conn = connection_lookup(ar->url);

	if (conn == NULL)
	{
		if (amqp_cxt == NULL)
			amqp_cxt = AllocSetContextCreate(TopMemoryContext, "txoutbox amqp connections",
											 ALLOCSET_SMALL_SIZES);
		if (!exit_callback_registered)
		{
			on_proc_exit(close_all_at_exit, (Datum) 0);
			exit_callback_registered = true;
		}
		conn = MemoryContextAllocZero(amqp_cxt, sizeof(AmqpConn));
		conn->url = MemoryContextStrdup(amqp_cxt, ar->url);
		conn->shown_url = MemoryContextStrdup(amqp_cxt, ar->shown_url);
		conn->host = MemoryContextStrdup(amqp_cxt, ar->host);
		conn->port = ar->port;
		conn->vhost = MemoryContextStrdup(amqp_cxt, ar->vhost);
		conn->user = MemoryContextStrdup(amqp_cxt, ar->user);
		conn->password = MemoryContextStrdup(amqp_cxt, ar->password);
		conn->fd = PGINVALID_SOCKET;
		conn->state = CONN_IDLE;
		conn->next = connections;
		connections = conn;
	}
	conn->refs++;
	conn->last_used = GetCurrentTimestamp();
	return conn;
}

/* route_id's channel on conn; made (closed) when create. */
static AmqpChannel *
connection_channel(AmqpConn *conn, int64 route_id, bool create)
{
	AmqpChannel *chan;

	for (chan = conn->channels; chan; chan = chan->next)
		if (chan->route_id == route_id)
			return chan;
	if (!create)
		return NULL;
	chan = MemoryContextAllocZero(amqp_cxt, sizeof(AmqpChannel));
	chan->conn = conn;
	chan->route_id = route_id;
	chan->state = CHAN_CLOSED;
	dlist_init(&chan->pending);
	dlist_init(&chan->unconfirmed);
	chan->next = conn->channels;
	conn->channels = chan;
	return chan;
}

/* The channel numbered number on conn, or NULL. */
static AmqpChannel *
channel_by_number(AmqpConn *conn, amqp_channel_t number)
{
	AmqpChannel *chan;

	for (chan = conn->channels; chan; chan = chan->next)
		if (chan->state != CHAN_CLOSED && chan->number == number)
			return chan;
	return NULL;
}

/* Does any channel of conn hold messages? */
static bool
connection_busy(const AmqpConn *conn)
{
	AmqpChannel *chan;

	for (chan = conn->channels; chan; chan = chan->next)
		if (!dlist_is_empty(&chan->pending) || !dlist_is_empty(&chan->unconfirmed))
			return true;
	return false;
}

/* Close conn's socket and library state, if any (no messages are touched). */
static void
connection_close_socket(AmqpConn *conn)
{
	connection_watch(conn, 0);
	if (conn->amqp)
	{
		amqp_destroy_connection(conn->amqp);	/* closes the socket */
		conn->amqp = NULL;
	}
	else if (conn->fd != PGINVALID_SOCKET)
		close(conn->fd);
	conn->fd = PGINVALID_SOCKET;
	conn->watched = 0;
	conn->want_write = false;
	if (conn->addrs)
	{
		freeaddrinfo(conn->addrs);
		conn->addrs = NULL;
		conn->addr = NULL;
	}
}

/*
 * conn failed or was lost: its published messages are retried with the
 * reason, those not published yet are given back unsent, and it is opened
 * again after a backoff (by the next message).  The first failure of a
 * streak is logged.
 */
static void
connection_down(AmqpConn *conn, const char *reason)
{
	char		msg[AMQP_ERROR_LEN];
	bool		was_ready = (conn->state == CONN_READY);
	AmqpChannel *chan;

	redact_into(conn, reason, conn->error, sizeof(conn->error));
	connection_close_socket(conn);
	conn->state = CONN_IDLE;
	conn->blocked = false;
	conn->stalled = false;
	netpub_backoff_reset(&conn->stall);
	conn->ret_active = false;
	conn->drain_soon = false;
	netpub_backoff_failed(&conn->backoff);

	snprintf(msg, sizeof(msg), "%s %s: %s",
			 was_ready ? "lost the connection to" : "could not connect to",
			 conn->shown_url, conn->error);
	for (chan = conn->channels; chan; chan = chan->next)
	{
		while (!dlist_is_empty(&chan->unconfirmed))
			request_finish(dlist_head_element(AmqpRequest, node, &chan->unconfirmed),
						   PUBLISH_RETRY, msg);
		while (!dlist_is_empty(&chan->pending))
			request_unsent(dlist_head_element(AmqpRequest, node, &chan->pending), msg);
		chan->state = CHAN_CLOSED;
		chan->nunconfirmed = 0;
	}
	conn->unconfirmed_bytes = 0;
	conn->pending_first = 0;

	if (!conn->down_logged)
	{
		ereport(LOG,
				(errmsg("txoutbox: amqp: %s", msg),
				 errdetail("Its routes' messages wait; the connection is retried with a backoff.")));
		conn->down_logged = true;
	}
}

/* connection_down with a formatted reason. */
static void connection_downf(AmqpConn *conn, const char *fmt,...) pg_attribute_printf(2, 3);

static void
connection_downf(AmqpConn *conn, const char *fmt,...)
{
	char		reason[AMQP_ERROR_LEN];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(reason, sizeof(reason), fmt, args);
	va_end(args);
	connection_down(conn, reason);
}

/* A frame could not be sent or read: the connection is gone. */
static void
connection_lost(AmqpConn *conn, const char *what, int status)
{
	connection_downf(conn, "%s: %s", what, amqp_error_string2(status));
}

/* Close an unused connection and forget it (nothing refers to it). */
static void
connection_free(AmqpConn *conn)
{
	AmqpConn  **link;
	AmqpChannel *chan;

	if (conn->state == CONN_READY && socket_ready(conn, POLLOUT))
	{
		amqp_connection_close_t close;

		memset(&close, 0, sizeof(close));
		close.reply_code = AMQP_REPLY_SUCCESS;
		close.reply_text = amqp_cstring_bytes("idle");
		(void) amqp_send_method(conn->amqp, 0, AMQP_CONNECTION_CLOSE_METHOD, &close);
	}
	connection_close_socket(conn);
	for (link = &connections; *link; link = &(*link)->next)
		if (*link == conn)
		{
			*link = conn->next;
			break;
		}
	while ((chan = conn->channels) != NULL)
	{
		conn->channels = chan->next;
		pfree(chan);
	}
	pfree(conn->url);
	pfree(conn->shown_url);
	pfree(conn->host);
	pfree(conn->vhost);
	pfree(conn->user);
	pfree(conn->password);
	pfree(conn);
}

/* Send a method on conn; false (conn dropped) when it could not be sent. */
static bool
connection_send(AmqpConn *conn, amqp_channel_t channel, amqp_method_number_t id,
				void *method, const char *what)
{
	int			st = amqp_send_method(conn->amqp, channel, id, method);

	if (st != AMQP_STATUS_OK)
	{
		connection_lost(conn, what, st);
		return false;
	}
	return true;
}

/* Try conn->addr and the addresses after it; false when none is left. */
static bool
connect_next_address(AmqpConn *conn, int *last_errno)
{
	for (; conn->addr; conn->addr = conn->addr->ai_next)
	{
		struct addrinfo *a = conn->addr;
		int			one = 1;
		pgsocket	fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd == PGINVALID_SOCKET)
		{
			*last_errno = errno;
			continue;
		}
		(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		(void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS)
		{
			conn->fd = fd;
			conn->state = CONN_CONNECTING;
			connection_watch(conn, WL_SOCKET_WRITEABLE);
			return true;
		}
		*last_errno = errno;
		close(fd);
	}
	return false;
}

/* Start connecting conn (idle, its backoff over). */
static void
connection_connect(AmqpConn *conn)
{
	struct addrinfo hints;
	char		port[16];
	int			rc;
	int			last_errno = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", conn->port);
	conn->connect_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 AMQP_CONNECT_TIMEOUT_MS);
	rc = getaddrinfo(conn->host, port, &hints, &conn->addrs);
	if (rc != 0)
	{
		conn->addrs = NULL;
		connection_downf(conn, "could not resolve host \"%s\": %s", conn->host, gai_strerror(rc));
		return;
	}
	conn->addr = conn->addrs;
	if (!connect_next_address(conn, &last_errno))
		connection_downf(conn, "%s", strerror(last_errno));
}

/* conn's TCP connect finished (its socket polled writable): start the handshake. */
static void
connection_tcp_done(AmqpConn *conn)
{
	int			err = 0;
	socklen_t	len = sizeof(err);
	amqp_socket_t *s;
	int			st;

	if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0)
	{
		int			last_errno = err;

		connection_watch(conn, 0);
		close(conn->fd);
		conn->fd = PGINVALID_SOCKET;
		conn->addr = conn->addr->ai_next;
		if (!connect_next_address(conn, &last_errno))
			connection_downf(conn, "%s", strerror(last_errno));
		return;
	}
	freeaddrinfo(conn->addrs);
	conn->addrs = NULL;
	conn->addr = NULL;

	conn->amqp = amqp_new_connection();
	s = conn->amqp ? amqp_tcp_socket_new(conn->amqp) : NULL;
	if (s == NULL)
	{
		if (conn->amqp)
			amqp_destroy_connection(conn->amqp);	/* the socket is still ours */
		conn->amqp = NULL;
		connection_downf(conn, "out of memory");
		return;
	}
	amqp_tcp_socket_set_sockfd(s, conn->fd);	/* the library owns it now */
	conn->state = CONN_HANDSHAKE;
	conn->step = HS_START;
	st = amqp_send_header(conn->amqp);
	if (st != AMQP_STATUS_OK)
	{
		connection_lost(conn, "sending the protocol header", st);
		return;
	}
	connection_watch(conn, WL_SOCKET_READABLE);
}

/* Send connection.start-ok: who we are, and the PLAIN credentials. */
static bool
send_start_ok(AmqpConn *conn)
{
	amqp_connection_start_ok_t ok;
	amqp_table_entry_t caps[4];
	amqp_table_entry_t props[5];
	char		name[64];
	size_t		ulen = strlen(conn->user);
	size_t		plen = strlen(conn->password);
	char	   *response = malloc(ulen + plen + 2);
	bool		sent;

	if (response == NULL)
	{
		connection_downf(conn, "out of memory");
		return false;
	}
	response[0] = '\0';
	memcpy(response + 1, conn->user, ulen);
	response[ulen + 1] = '\0';
	memcpy(response + ulen + 2, conn->password, plen);

	caps[0].key = amqp_cstring_bytes("authentication_failure_close");
	caps[1].key = amqp_cstring_bytes("connection.blocked");
	caps[2].key = amqp_cstring_bytes("publisher_confirms");
	caps[3].key = amqp_cstring_bytes("exchange_exchange_bindings");
	for (int i = 0; i < 4; i++)
	{
		caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
		caps[i].value.value.boolean = 1;
	}
	snprintf(name, sizeof(name), "txoutbox worker (pid %d)", (int) MyProcPid);
	props[0].key = amqp_cstring_bytes("product");
	props[0].value.kind = AMQP_FIELD_KIND_UTF8;
	props[0].value.value.bytes = amqp_cstring_bytes("txoutbox");
	props[1].key = amqp_cstring_bytes("platform");
	props[1].value.kind = AMQP_FIELD_KIND_UTF8;
	props[1].value.value.bytes = amqp_cstring_bytes("PostgreSQL " PG_VERSION);
	props[2].key = amqp_cstring_bytes("version");
	props[2].value.kind = AMQP_FIELD_KIND_UTF8;
	props[2].value.value.bytes = amqp_cstring_bytes("rabbitmq-c " AMQP_VERSION_STRING);
	props[3].key = amqp_cstring_bytes("connection_name");
	props[3].value.kind = AMQP_FIELD_KIND_UTF8;
	props[3].value.value.bytes = amqp_cstring_bytes(name);
	props[4].key = amqp_cstring_bytes("capabilities");
	props[4].value.kind = AMQP_FIELD_KIND_TABLE;
	props[4].value.value.table.num_entries = lengthof(caps);
	props[4].value.value.table.entries = caps;

	ok.client_properties.num_entries = lengthof(props);
	ok.client_properties.entries = props;
	ok.mechanism = amqp_cstring_bytes("PLAIN");
	ok.response.len = ulen + plen + 2;
	ok.response.bytes = response;
	ok.locale = amqp_cstring_bytes("en_US");
	sent = connection_send(conn, 0, AMQP_CONNECTION_START_OK_METHOD, &ok, "sending connection.start-ok");
	explicit_bzero(response, ulen + plen + 2);
	free(response);
	return sent;
}

/* Does the broker's space-separated mechanism list offer PLAIN? */
static bool
offers_plain(amqp_bytes_t mechanisms)
{
	const char *p = mechanisms.bytes;
	size_t		left = mechanisms.len;

	while (left > 0)
	{
		size_t		word = 0;

		while (word < left && p[word] != ' ')
			word++;
		if (word == 5 && memcmp(p, "PLAIN", 5) == 0)
			return true;
		p += word;
		left -= word;
		while (left > 0 && *p == ' ')
			p++, left--;
	}
	return false;
}

/* The broker's close (connection or channel) as "code TEXT", in buf. */
static const char *
close_reason(uint16_t code, amqp_bytes_t text, char *buf, size_t buflen)
{
	char		t[AMQP_ERROR_LEN];

	snprintf(buf, buflen, "%u %s", code, bytes_str(text, t, sizeof(t)));
	return buf;
}

/* conn is up: open the channels that have messages, and tell the dispatcher. */
static void
connection_ready(AmqpConn *conn)
{
	conn->state = CONN_READY;
	conn->last_rx = GetCurrentTimestamp();
	conn->next_tick = TimestampTzPlusMilliseconds(conn->last_rx, AMQP_TICK_MS);
	conn->last_channel = 0;
	conn->error[0] = '\0';
	netpub_backoff_reset(&conn->backoff);
	if (conn->down_logged)
	{
		ereport(LOG,
				(errmsg("txoutbox: amqp: connected to %s again", conn->shown_url)));
		conn->down_logged = false;
	}
	/* its routes may take messages now: the next round should claim them */
	SetLatch(MyLatch);
	connection_flush(conn);
}

/*
 * A handshake frame (channel 0) arrived.  Returns false when conn was
 * dropped.
 */
static bool
handshake_frame(AmqpConn *conn, const amqp_frame_t *f)
{
	char		buf[AMQP_ERROR_LEN];

	if (f->frame_type == FRAME_PROTOCOL_HEADER)
	{
		connection_downf(conn, "the server does not speak AMQP 0-9-1 (it offered %u.%u)",
						 f->payload.protocol_header.protocol_version_major,
						 f->payload.protocol_header.protocol_version_minor);
		return false;
	}
	if (f->frame_type != AMQP_FRAME_METHOD || f->channel != 0)
		return true;
	if (f->payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)
	{
		amqp_connection_close_t *c = f->payload.method.decoded;
		amqp_connection_close_ok_t ok;

		memset(&ok, 0, sizeof(ok));
		(void) amqp_send_method(conn->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
		connection_downf(conn, "the broker refused the connection: %s",
						 close_reason(c->reply_code, c->reply_text, buf, sizeof(buf)));
		return false;
	}
	switch (conn->step)
	{
		case HS_START:
			if (f->payload.method.id == AMQP_CONNECTION_START_METHOD)
			{
				amqp_connection_start_t *s = f->payload.method.decoded;

				if (s->version_major != AMQP_PROTOCOL_VERSION_MAJOR ||
					s->version_minor != AMQP_PROTOCOL_VERSION_MINOR)
				{
					connection_downf(conn, "the broker speaks AMQP %u.%u, not 0-9-1",
									 s->version_major, s->version_minor);
					return false;
				}
				if (!offers_plain(s->mechanisms))
				{
					connection_downf(conn, "the broker does not offer the PLAIN login mechanism");
					return false;
				}
				if (!send_start_ok(conn))
					return false;
				conn->step = HS_TUNE;
				return true;
			}
			break;
		case HS_TUNE:
			if (f->payload.method.id == AMQP_CONNECTION_TUNE_METHOD)
			{
				amqp_connection_tune_t *t = f->payload.method.decoded;
				amqp_connection_tune_ok_t ok;
				amqp_connection_open_t open;
				int			channel_max = t->channel_max == 0 ? UINT16_MAX : t->channel_max;
				uint32_t	frame_max = AMQP_FRAME_MAX;
				int			heartbeat = AMQP_HEARTBEAT_S;
				int			st;

				if (t->frame_max != 0 && t->frame_max < frame_max)
					frame_max = t->frame_max;
				if (t->heartbeat != 0 && t->heartbeat < heartbeat)
					heartbeat = t->heartbeat;
				/* a session (dispatch()) reads nothing between its calls */
				if (!compat_am_background_worker())
					heartbeat = 0;
				st = amqp_tune_connection(conn->amqp, channel_max, frame_max, heartbeat);
				if (st != AMQP_STATUS_OK)
				{
					connection_lost(conn, "tuning the connection", st);
					return false;
				}
				conn->channel_max = channel_max;
				conn->frame_max = frame_max;
				conn->heartbeat_s = heartbeat;
				ok.channel_max = channel_max;
				ok.frame_max = frame_max;
				ok.heartbeat = heartbeat;
				if (!connection_send(conn, 0, AMQP_CONNECTION_TUNE_OK_METHOD, &ok,
									 "sending connection.tune-ok"))
					return false;
				open.virtual_host = amqp_cstring_bytes(conn->vhost);
				open.capabilities = amqp_empty_bytes;
				open.insist = 1;
				if (!connection_send(conn, 0, AMQP_CONNECTION_OPEN_METHOD, &open,
									 "sending connection.open"))
					return false;
				conn->step = HS_OPEN;
				return true;
			}
			break;
		case HS_OPEN:
			if (f->payload.method.id == AMQP_CONNECTION_OPEN_OK_METHOD)
			{
				connection_ready(conn);
				return conn->state == CONN_READY;
			}
			break;
	}
	connection_downf(conn, "unexpected %s during the handshake", amqp_method_name(f->payload.method.id));
	return false;
}

/* ---- channels ------------------------------------------------------------ */

/* Open chan (closed) under a new number; false when conn was dropped. */
static bool
channel_open(AmqpChannel *chan)
{
	AmqpConn   *conn = chan->conn;
	amqp_channel_open_t open;

	if (conn->last_channel >= conn->channel_max)
	{
		/* numbers are never reused on a connection: start a new one */
		connection_downf(conn, "all %d channel numbers of the connection were used", conn->channel_max);
		return false;
	}
	chan->number = ++conn->last_channel;
	open.out_of_band = amqp_empty_bytes;
	if (!connection_send(conn, chan->number, AMQP_CHANNEL_OPEN_METHOD, &open, "opening a channel"))
		return false;
	chan->state = CHAN_OPENING;
	return true;
}

/*
 * The broker closed chan: its unconfirmed messages are retried with the
 * reason; what is pending goes on a new channel.  A message too large for
 * the broker (406, "message size N is larger than configured max size M")
 * fails instead, and the connection remembers the limit.
 */
static void
channel_closed_by_broker(AmqpChannel *chan, uint16_t code, amqp_bytes_t text)
{
	AmqpConn   *conn = chan->conn;
	char		reason[AMQP_ERROR_LEN];
	char		shown[AMQP_ERROR_LEN];
	char		msg[AMQP_ERROR_LEN + 128];
	char		t[AMQP_ERROR_LEN];
	unsigned long long size = 0;
	unsigned long long limit = 0;
	const char *hit;

	redact_into(conn, close_reason(code, text, reason, sizeof(reason)), shown, sizeof(shown));
	snprintf(msg, sizeof(msg), "the broker closed the route's channel: %s", shown);
	bytes_str(text, t, sizeof(t));
	if (code == AMQP_PRECONDITION_FAILED &&
		(hit = strstr(t, "message size ")) != NULL &&
		sscanf(hit, "message size %llu is larger than configured max size %llu", &size, &limit) == 2)
		conn->max_message_bytes = (size_t) limit;

	while (!dlist_is_empty(&chan->unconfirmed))
	{
		AmqpRequest *r = dlist_head_element(AmqpRequest, node, &chan->unconfirmed);

		if (size > 0 && r->body_len == size)
		{
			char		too_big[256];

			snprintf(too_big, sizeof(too_big),
					 "the message (%zu bytes) is larger than the broker's max_message_size (%llu bytes)",
					 r->body_len, limit);
			request_finish(r, PUBLISH_FAILED, too_big);
		}
		else
			request_finish(r, PUBLISH_RETRY, msg);
	}
	chan->state = CHAN_CLOSED;
	chan->nunconfirmed = 0;
}

/*
 * Settle chan's unconfirmed messages up to tag (or only tag): an ack is a
 * success unless the message was returned as unroutable; a nack is a retry.
 */
static void
channel_settle(AmqpChannel *chan, uint64 tag, bool multiple, bool ack)
{
	AmqpConn   *conn = chan->conn;
	dlist_mutable_iter it;

	if (conn->stalled)
	{
		conn->stalled = false;
		netpub_backoff_reset(&conn->stall);
		SetLatch(MyLatch);		/* its routes may take messages again */
	}
	dlist_foreach_modify(it, &chan->unconfirmed)
	{
		AmqpRequest *r = dlist_container(AmqpRequest, node, it.cur);

		if (r->tag > tag && !(multiple && tag == 0))
			break;
		if (!multiple && r->tag != tag)
			continue;
		if (!ack)
			request_finish(r, PUBLISH_RETRY,
						   "the broker did not take the message (basic.nack): a queue may be full "
						   "(x-overflow reject-publish) or could not store it");
		else if (r->returned)
		{
			char		why[AMQP_SHORTSTR_MAX * 2 + 200];

			snprintf(why, sizeof(why),
					 "unroutable: no queue is bound to exchange \"%s\" for routing key \"%s\" "
					 "(the broker returned it: 312 NO_ROUTE)",
					 r->exchange[0] ? r->exchange : "(default)", r->routing_key);
			request_finish(r, PUBLISH_RETRY, why);
		}
		else
			request_finish(r, PUBLISH_SUCCEEDED, NULL);
		if (!multiple)
			break;
	}

	/*
	 * A route the last round found full has room again: the dispatcher
	 * claims for it only in a full round, so ask for one now rather than at
	 * its next poll.
	 */
	if (chan->held && netpub_route_load(&amqp_transport, chan->route_id) < chan->limit)
	{
		chan->held = false;
		SetLatch(MyLatch);
	}
}

/* A basic.return was read to its end: mark the message it names. */
static void
return_complete(AmqpConn *conn)
{
	AmqpChannel *chan = channel_by_number(conn, conn->ret_channel);
	dlist_iter	it;

	conn->ret_active = false;
	if (chan == NULL)
		return;
	dlist_foreach(it, &chan->unconfirmed)
	{
		AmqpRequest *r = dlist_container(AmqpRequest, node, it.cur);

		if (!r->returned && strcmp(r->base.msg.id_str, conn->ret_id) == 0)
		{
			r->returned = true;		/* its basic.ack follows */
			return;
		}
	}
}

/* ---- frames -------------------------------------------------------------- */

/* A frame on a channel of a ready conn.  Returns false when conn was dropped. */
static bool
channel_frame(AmqpConn *conn, const amqp_frame_t *f)
{
	AmqpChannel *chan;

	if (f->frame_type == AMQP_FRAME_HEADER)
	{
		if (conn->ret_active && !conn->ret_have_header && f->channel == conn->ret_channel)
		{
			amqp_basic_properties_t *p = f->payload.properties.decoded;

			conn->ret_id[0] = '\0';
			if (p && (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG))
				bytes_str(p->message_id, conn->ret_id, sizeof(conn->ret_id));
			conn->ret_have_header = true;
			conn->ret_body_left = f->payload.properties.body_size;
			if (conn->ret_body_left == 0)
				return_complete(conn);
		}
		return true;
	}
	if (f->frame_type == AMQP_FRAME_BODY)
	{
		if (conn->ret_active && conn->ret_have_header && f->channel == conn->ret_channel)
		{
			conn->ret_body_left -= Min(conn->ret_body_left, f->payload.body_fragment.len);
			if (conn->ret_body_left == 0)
				return_complete(conn);
		}
		return true;
	}
	if (f->frame_type != AMQP_FRAME_METHOD)
		return true;

	chan = channel_by_number(conn, f->channel);
	if (chan == NULL)
		return true;			/* a channel we gave up */
	switch (f->payload.method.id)
	{
		case AMQP_CHANNEL_OPEN_OK_METHOD:
			{
				amqp_confirm_select_t select;

				select.nowait = 0;
				if (!connection_send(conn, chan->number, AMQP_CONFIRM_SELECT_METHOD, &select,
									 "selecting publisher confirms"))
					return false;
				chan->state = CHAN_SELECTING;
				break;
			}
		case AMQP_CONFIRM_SELECT_OK_METHOD:
			chan->state = CHAN_READY;
			chan->next_tag = 1;
			break;
		case AMQP_BASIC_ACK_METHOD:
			{
				amqp_basic_ack_t *a = f->payload.method.decoded;

				channel_settle(chan, a->delivery_tag, a->multiple, true);
				break;
			}
		case AMQP_BASIC_NACK_METHOD:
			{
				amqp_basic_nack_t *n = f->payload.method.decoded;

				channel_settle(chan, n->delivery_tag, n->multiple, false);
				break;
			}
		case AMQP_BASIC_RETURN_METHOD:
			conn->ret_active = true;
			conn->ret_have_header = false;
			conn->ret_channel = f->channel;
			conn->ret_id[0] = '\0';
			break;
		case AMQP_CHANNEL_CLOSE_METHOD:
			{
				amqp_channel_close_t *c = f->payload.method.decoded;
				amqp_channel_close_ok_t ok;

				memset(&ok, 0, sizeof(ok));
				if (!connection_send(conn, chan->number, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok,
									 "answering channel.close"))
					return false;
				channel_closed_by_broker(chan, c->reply_code, c->reply_text);
				break;
			}
		default:
			break;
	}
	return true;
}

/* A frame on channel 0 of a ready conn.  Returns false when conn was dropped. */
static bool
connection_frame(AmqpConn *conn, const amqp_frame_t *f)
{
	char		buf[AMQP_ERROR_LEN];

	if (f->frame_type != AMQP_FRAME_METHOD)
		return true;
	switch (f->payload.method.id)
	{
		case AMQP_CONNECTION_CLOSE_METHOD:
			{
				amqp_connection_close_t *c = f->payload.method.decoded;
				amqp_connection_close_ok_t ok;

				memset(&ok, 0, sizeof(ok));
				(void) amqp_send_method(conn->amqp, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
				connection_downf(conn, "the broker closed the connection: %s",
								 close_reason(c->reply_code, c->reply_text, buf, sizeof(buf)));
				return false;
			}
		case AMQP_CONNECTION_BLOCKED_METHOD:
			{
				amqp_connection_blocked_t *b = f->payload.method.decoded;

				conn->blocked = true;
				bytes_str(b->reason, conn->blocked_reason, sizeof(conn->blocked_reason));
				break;
			}
		case AMQP_CONNECTION_UNBLOCKED_METHOD:
			conn->blocked = false;
			SetLatch(MyLatch);	/* its routes may take messages again */
			break;
		default:
			break;
	}
	return true;
}

/*
 * Read every frame the library has or the socket holds, without waiting
 * (the library sends a heartbeat meanwhile when one is due, and reports a
 * broker silent for two heartbeats).
 */
static void
connection_drain(AmqpConn *conn)
{
	struct timeval zero = {0, 0};

	conn->drain_soon = false;
	while (conn->state == CONN_HANDSHAKE || conn->state == CONN_READY)
	{
		amqp_frame_t f;
		int			st = amqp_simple_wait_frame_noblock(conn->amqp, &f, &zero);
		bool		alive;

		if (st == AMQP_STATUS_TIMEOUT)
			break;
		if (st != AMQP_STATUS_OK)
		{
			connection_lost(conn, "reading from the broker", st);
			return;
		}
		if (conn->state == CONN_HANDSHAKE)
			alive = handshake_frame(conn, &f);
		else if (f.channel == 0 && f.frame_type == AMQP_FRAME_METHOD)
			alive = connection_frame(conn, &f);
		else
			alive = channel_frame(conn, &f);
		if (!alive)
			return;
	}
	if (conn->amqp && !amqp_frames_enqueued(conn->amqp) && !amqp_data_in_buffer(conn->amqp))
		amqp_maybe_release_buffers(conn->amqp);
}

/* ---- publishing ---------------------------------------------------------- */

/*
 * May conn send now?  rabbitmq-c before 0.14 (Debian 12 has 0.11) waits in
 * recv() with no timeout inside amqp_basic_publish() once nothing has
 * arrived for two heartbeats (upstream issue #780, fixed in 0.14.0): so
 * when the broker has been silent for nearly that long, read what the
 * socket holds first, and drop the connection if it is empty.  Later
 * versions would report the heartbeat timeout themselves; the check is
 * the same for all.  Returns false when conn was dropped.
 */
static bool
connection_alive_for_send(AmqpConn *conn, TimestampTz now)
{
	int64		limit_ms = (int64) conn->heartbeat_s * 2000 - AMQP_SILENCE_MARGIN_MS;

	if (conn->heartbeat_s == 0 || ms_since(conn->last_rx, now) < limit_ms)
		return true;
	if (socket_ready(conn, POLLIN))
	{
		conn->last_rx = now;
		connection_drain(conn);
		return conn->state == CONN_READY;
	}
	connection_downf(conn, "no data from the broker for %lld s (heartbeat %d s)",
					 (long long) (ms_since(conn->last_rx, now) / 1000), conn->heartbeat_s);
	return false;
}

/* Publish r, the head of chan's pending list; false when conn was dropped. */
static bool
publish_one(AmqpChannel *chan, AmqpRequest *r)
{
	AmqpConn   *conn = chan->conn;
	amqp_bytes_t body;
	int			st;

	if (conn->max_message_bytes > 0 && r->body_len > conn->max_message_bytes)
	{
		char		why[256];

		snprintf(why, sizeof(why),
				 "the message (%zu bytes) is larger than the broker's max_message_size (%zu bytes)",
				 r->body_len, conn->max_message_bytes);
		request_finish(r, PUBLISH_FAILED, why);
		return true;
	}
	if (r->props_len + 20 > conn->frame_max)
	{
		char		why[256];

		snprintf(why, sizeof(why),
				 "the message's properties and headers take %zu bytes, more than one AMQP frame "
				 "holds (frame_max %zu)", r->props_len, conn->frame_max);
		request_finish(r, PUBLISH_FAILED, why);
		return true;
	}

	body.len = r->body_len;
	body.bytes = r->body;
	st = amqp_basic_publish(conn->amqp, chan->number, amqp_cstring_bytes(r->exchange),
							amqp_cstring_bytes(r->routing_key), r->mandatory, 0, &r->props, body);
	if (st != AMQP_STATUS_OK)
	{
		/* a partial publish never reaches a queue: r is given back unsent */
		connection_lost(conn, "publishing", st);
		return false;
	}
	dlist_delete(&r->node);
	r->sent = true;
	r->tag = chan->next_tag++;
	dlist_push_tail(&chan->unconfirmed, &r->node);
	chan->nunconfirmed++;
	conn->unconfirmed_bytes += r->wire_len;
	return true;
}

/*
 * Publish what conn's channels have pending, as far as the window, the
 * socket and the broker allow; open the channels that need it.
 */
static void
connection_flush(AmqpConn *conn)
{
	AmqpChannel *chan;
	TimestampTz now;

	if (conn->state != CONN_READY)
		return;
	now = GetCurrentTimestamp();
	for (chan = conn->channels; chan && conn->state == CONN_READY; chan = chan->next)
	{
		if (dlist_is_empty(&chan->pending))
			continue;
		if (chan->state == CHAN_CLOSED)
		{
			(void) channel_open(chan);
			continue;
		}
		if (chan->state != CHAN_READY)
			continue;
		while (!dlist_is_empty(&chan->pending) && conn->state == CONN_READY)
		{
			AmqpRequest *r = dlist_head_element(AmqpRequest, node, &chan->pending);

			if (conn->blocked)
				return;
			if (conn->unconfirmed_bytes > 0)
			{
				if (conn->unconfirmed_bytes + r->wire_len > AMQP_WINDOW_BYTES)
					break;		/* the acks make room */
				if (!socket_ready(conn, POLLOUT))
				{
					conn->want_write = true;	/* netpub says when */
					connection_watch(conn, WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE);
					return;
				}
			}
			if (!connection_alive_for_send(conn, now) || chan->state != CHAN_READY)
				break;
			if (!publish_one(chan, r))
				return;
		}
	}
	if (conn->state != CONN_READY)
		return;
	if (conn->want_write)
	{
		conn->want_write = false;
		connection_watch(conn, WL_SOCKET_READABLE);
	}
	/* amqp_basic_publish may have read frames itself: read them soon */
	if (amqp_frames_enqueued(conn->amqp) || amqp_data_in_buffer(conn->amqp))
		conn->drain_soon = true;
}

/* ---- the timer ----------------------------------------------------------- */

/* Why r (pending) is not published yet. */
static void
pending_reason(const AmqpConn *conn, const AmqpChannel *chan, char *buf, size_t buflen)
{
	if (conn->state != CONN_READY)
		snprintf(buf, buflen, "still connecting to %s", conn->shown_url);
	else if (conn->blocked)
		snprintf(buf, buflen, "the broker blocked the connection (%s)", conn->blocked_reason);
	else if (chan->state != CHAN_READY)
		snprintf(buf, buflen, "the broker did not open the route's channel");
	else
		snprintf(buf, buflen, "the publish window stayed full (%zu bytes unconfirmed)",
				 conn->unconfirmed_bytes);
}

/*
 * Give back unsent the pending messages whose timeout has come (just
 * before netpub would retry them as sent), and find the next such time.
 * conn->pending_first may be early (a message it stood for was published
 * since): then this only finds the next one.
 */
static void
expire_pending(AmqpConn *conn, TimestampTz now)
{
	AmqpChannel *chan;
	TimestampTz first = 0;

	if (conn->pending_first == 0 || now < conn->pending_first)
		return;
	for (chan = conn->channels; chan; chan = chan->next)
	{
		dlist_mutable_iter it;

		dlist_foreach_modify(it, &chan->pending)
		{
			AmqpRequest *r = dlist_container(AmqpRequest, node, it.cur);
			char		why[AMQP_ERROR_LEN];
			char		msg[AMQP_ERROR_LEN + 64];

			if (now < r->base.timeout_at)
			{
				if (first == 0 || r->base.timeout_at < first)
					first = r->base.timeout_at;
				continue;
			}
			pending_reason(conn, chan, why, sizeof(why));
			snprintf(msg, sizeof(msg), "not published within %d ms: %s", r->base.timeout_ms, why);
			request_unlink(r);
			netpub_finish_unsent(&r->base, "%s", msg);
		}
	}
	conn->pending_first = first;
}

/* Set netpub's timer for the earliest thing any connection waits for. */
static void
schedule_timer(void)
{
	TimestampTz next = 0;
	AmqpConn   *conn;

#define CONSIDER(t) do { TimestampTz _t = (t); if (_t != 0 && (next == 0 || _t < next)) next = _t; } while (0)
	for (conn = connections; conn; conn = conn->next)
	{
		if (conn->drain_soon)
			CONSIDER(GetCurrentTimestamp());
		if (conn->state == CONN_CONNECTING || conn->state == CONN_HANDSHAKE)
			CONSIDER(conn->connect_deadline);
		if (conn->state == CONN_READY)
			CONSIDER(conn->next_tick);
		CONSIDER(conn->pending_first);
	}
#undef CONSIDER
	netpub_set_timer(&amqp_transport, next);
}

/* NetTransport.on_timer: connect timeouts, heartbeats, expiries, idle closes. */
static void
amqp_on_timer(void)
{
	TimestampTz now = GetCurrentTimestamp();
	AmqpConn   *conn;
	AmqpConn   *next;

	for (conn = connections; conn; conn = next)
	{
		next = conn->next;
		if ((conn->state == CONN_CONNECTING || conn->state == CONN_HANDSHAKE) &&
			now >= conn->connect_deadline)
			connection_downf(conn, "timed out after %d ms %s", AMQP_CONNECT_TIMEOUT_MS,
							 conn->state == CONN_CONNECTING ? "connecting" :
							 "waiting for the broker's handshake");
		if (conn->state == CONN_READY && (conn->drain_soon || now >= conn->next_tick))
		{
			int64		limit_ms = (int64) conn->heartbeat_s * 2000 - AMQP_SILENCE_MARGIN_MS;

			if (socket_ready(conn, POLLIN))
				conn->last_rx = now;
			if (conn->heartbeat_s > 0 && ms_since(conn->last_rx, now) >= limit_ms)
				connection_downf(conn, "no data from the broker for %lld s (heartbeat %d s)",
								 (long long) (ms_since(conn->last_rx, now) / 1000), conn->heartbeat_s);
			else
			{
				connection_drain(conn);
				connection_flush(conn);
			}
			conn->next_tick = TimestampTzPlusMilliseconds(now, AMQP_TICK_MS);
		}
		expire_pending(conn, now);
		if (conn->refs == 0 && !connection_busy(conn) &&
			ms_since(conn->last_used, now) >= AMQP_IDLE_CLOSE_MS)
			connection_free(conn);
	}
	schedule_timer();
}

/* ---- the transport ------------------------------------------------------- */

/*
 * NetTransport.start: queue r on its route's channel and publish it when
 * the connection allows (at once, normally).  Its timeout is the route's
 * timeout_ms, cut to the budget (its lease).
 */
static bool
amqp_start(NetRequest *req, int budget_ms)
{
	AmqpRequest *r = (AmqpRequest *) req;
	AmqpConn   *conn = r->conn;
	AmqpChannel *chan;

	req->timeout_ms = Min(r->cfg_timeout_ms, budget_ms);
	req->timeout_at = TimestampTzPlusMilliseconds(req->started_at, req->timeout_ms);
	conn->last_used = req->started_at;

	if (conn->state == CONN_IDLE)
	{
		if (!netpub_backoff_ready(&conn->backoff))
		{
			netpub_finish_unsent(req, "not sent: the connection to %s is down (%s); it is retried after a backoff",
								 conn->shown_url, conn->error);
			return false;
		}
		connection_connect(conn);
		if (conn->state == CONN_IDLE)
		{
			netpub_finish_unsent(req, "not sent: could not connect to %s: %s",
								 conn->shown_url, conn->error);
			schedule_timer();
			return false;
		}
	}
	chan = connection_channel(conn, r->route_id, true);
	r->chan = chan;
	r->sent = false;
	r->returned = false;
	dlist_push_tail(&chan->pending, &r->node);
	if (conn->pending_first == 0 || req->timeout_at < conn->pending_first)
		conn->pending_first = req->timeout_at;
	connection_flush(conn);
	schedule_timer();
	return req->state == NETREQ_RUNNING;
}

/* NetTransport.on_socket: a connection's socket has events. */
static void
amqp_on_socket(pgsocket fd, uint32 events)
{
	AmqpConn   *conn;

	for (conn = connections; conn; conn = conn->next)
		if (conn->fd == fd)
			break;
	if (conn == NULL)
	{
		netpub_watch(&amqp_transport, fd, 0);	/* not ours any more */
		return;
	}
	if (conn->state == CONN_CONNECTING)
	{
		if (events & WL_SOCKET_WRITEABLE)
			connection_tcp_done(conn);
	}
	else
	{
		if (events & WL_SOCKET_READABLE)
		{
			conn->last_rx = GetCurrentTimestamp();
			connection_drain(conn);
		}
		connection_flush(conn);
	}
	schedule_timer();
}

/*
 * NetTransport.abandon: netpub retries r (its timeout passed, or dispatch()
 * ends in an error).  A late confirm of r is ignored.  A published message
 * that timed out makes its connection take no more for a while.
 */
static void
amqp_abandon(NetRequest *req)
{
	AmqpRequest *r = (AmqpRequest *) req;

	if (r->chan && r->sent)
	{
		AmqpConn   *conn = r->chan->conn;

		conn->stalled = true;
		netpub_backoff_failed(&conn->stall);
	}
	request_unlink(r);
}

/* NetTransport.release: let go of the connection r held. */
static void
amqp_release(NetRequest *req)
{
	AmqpRequest *r = (AmqpRequest *) req;

	request_unlink(r);
	if (r->conn)
	{
		r->conn->refs--;
		r->conn = NULL;
	}
}

const NetTransport amqp_transport = {
	.name = "amqp",
	.request_size = sizeof(AmqpRequest),
	.max_running = NULL,
	.prepare = amqp_request_prepare,
	.start = amqp_start,
	.on_socket = amqp_on_socket,
	.on_timer = amqp_on_timer,
	.abandon = amqp_abandon,
	.release = amqp_release,
};

/*
 * How many more messages route may take now (Publisher.capacity; runs in
 * a transaction and does no I/O): none while its connection is in backoff,
 * blocked by the broker, or stalled after a confirm timeout; one (to open
 * the connection) while it is not up; else what netpub allows for twice
 * "max_in_flight" (the route is not claimed from while it has that many
 * waiting or unconfirmed).
 */
int
amqp_route_capacity(const OutboxRoute *route, const AmqpRoute *ar)
{
	AmqpConn   *conn = connection_lookup(ar->url);
	int			load = netpub_route_load(&amqp_transport, route->id);
	AmqpChannel *chan;
	int			room;

	if (conn == NULL || conn->state != CONN_READY)
	{
		if (conn && conn->state == CONN_IDLE && !netpub_backoff_ready(&conn->backoff))
			return 0;
		return load == 0 ? 1 : 0;
	}
	conn->last_used = GetCurrentTimestamp();
	if (conn->blocked)
		return 0;
	if (conn->stalled && !netpub_backoff_ready(&conn->stall))
		return 0;
	/*
	 * Claim again while a window's worth still waits behind the one in
	 * flight: the broker then always has max_in_flight to confirm, even
	 * while a round claims the next batch.
	 */
	room = netpub_capacity(&amqp_transport, route, 2 * ar->max_in_flight);
	if (room == 0 && (chan = connection_channel(conn, route->id, false)) != NULL)
	{
		/* full: channel_settle wakes the dispatcher when it has room */
		chan->held = true;
		chan->limit = 2 * ar->max_in_flight;
	}
	return room;
}

#endif							/* TXOUTBOX_WITH_AMQP */
