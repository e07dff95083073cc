/*-------------------------------------------------------------------------
 *
 * redis_transport.c
 *	  The redis publisher's transport: XADDs pipelined over non-blocking
 *	  hiredis connections, driven by the network machinery's wait
 *	  (netpub.c), so the worker sleeps until a socket is ready, a timer is
 *	  due, or its latch is set.  hiredis makes no threads and no callbacks:
 *	  everything here runs on the main thread, and only the socket it
 *	  connects is used (c->fd in the WaitEventSet).
 *
 * Connections: one per server (host, port, user, password, db), shared by
 * every route naming it, opened when a request first needs it and kept
 * across rounds.  Opening one: a non-blocking connect (a host name is
 * resolved first, by the system resolver), then AUTH and SELECT when the
 * url asks for them; no XADD is written before both replied, so a wrong
 * password or database never lets one through to the wrong place.  A
 * connection that fails, or is lost while requests are on it, waits out a
 * NetBackoff before the next attempt; meanwhile the routes on it take no
 * messages, and then only a few until it is up (redis_conn_limit), and
 * requests that reach it are not sent (their attempts are given back).  A server that closes an idle connection is
 * simply reconnected next time.  Connections close when the process exits.
 *
 * Pipelining: a started request waits in its connection's queue until the
 * connection is ready and the pipeline has room (REDIS_PIPELINE_BYTES of
 * commands awaiting replies; one command alone may be bigger), then its
 * command goes into hiredis' output buffer, which is written as far as
 * the socket takes it (never blocking) and watched for writability while
 * something is left.  Replies come in the order of the commands, so the
 * head of the pipeline is the request a reply belongs to.  A request
 * whose reply is late (netpub's timeout) therefore takes its connection
 * down with it: the replies after it could not be told apart.  When a
 * connection goes down, a request whose command was written (even in part)
 * gets a retry that counts its attempt (it may have been stored; a command
 * the server always cuts short cannot loop for ever), one of which nothing
 * was written is not sent (its attempt is given back).
 *
 * netpub walks its running requests when it times them out, so a
 * connection dropped from abandon() cannot finish its other requests at
 * once: they wait in the finishing list for this transport's timer, set
 * to now.  The same timer runs connect deadlines and the flush after
 * requests were started (one write for all the commands of a round).
 *
 * Outcomes of XADD replies: an entry id succeeds; error replies are
 * retried (the broker's or the route's problem: OOM, LOADING, BUSY,
 * MISCONF, READONLY, NOAUTH, WRONGPASS, NOPERM, WRONGTYPE, MOVED/ASK,
 * other ERRs), except a command the server refused as too large
 * ("Protocol error: invalid bulk length", over proto-max-bulk-len), which
 * fails the message: retrying it cannot help.  READONLY, NOAUTH, WRONGPASS
 * and the protocol error a server without our AUTH gives big commands
 * also drop the connection (a failover, or credentials that changed) and
 * back off.  Error texts name the server by its url without
 * the password, and any reply text is cut short, made printable ASCII and
 * has the password taken out.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "redis.h"

#define REDIS_ERROR_TEXT	200		/* bytes of a reply shown in last_error */
#define REDIS_REASON_LEN	256

typedef enum RedisConnState
{
	REDIS_CONN_CLOSED,
	REDIS_CONN_CONNECTING,		/* waiting for the socket to connect */
	REDIS_CONN_HANDSHAKE,		/* AUTH / SELECT sent, replies due */
	REDIS_CONN_READY
} RedisConnState;

typedef struct RedisConn
{
	RedisServer server;			/* in redis_cxt */
	RedisConnState state;
	redisContext *ctx;			/* NULL when closed */
	pgsocket	fd;
	NetBackoff	backoff;
	TimestampTz connect_deadline;	/* connecting or handshake: given up then */
	int			connect_timeout_ms;
	int			handshake_due;	/* AUTH / SELECT replies still to come */
	const char *handshake[2];	/* their names, in order */
	int			handshake_next;
	dlist_head	queue;			/* REDIS_REQ_QUEUED, oldest first */
	dlist_head	pipeline;		/* REDIS_REQ_PIPELINED, in reply order */
	int			npipelined;
	size_t		pipelined_bytes;
	uint64		appended;		/* bytes handed to hiredis on this connection */
	uint64		written;		/* of them, written to the socket */
	bool		outage_logged;	/* a failure was logged, recovery not yet */
	char		last_error[REDIS_REASON_LEN];	/* why it last failed (no secret) */
} RedisConn;

static MemoryContext redis_cxt = NULL;
static RedisConn **conns = NULL;
static int	nconns = 0;
static int	maxconns = 0;
static dlist_head finishing = DLIST_STATIC_INIT(finishing);
static TimestampTz timer_at = 0;	/* what we asked netpub_set_timer for */

static void conn_flush(RedisConn *conn);

/* ---- connections ------------------------------------------------------- */

/* Is a the same server, with the same credentials and database, as b? */
static bool
same_server(const RedisServer *a, const RedisServer *b)
{
	return strcmp(a->host, b->host) == 0 && a->port == b->port && a->db == b->db &&
		((a->user == NULL && b->user == NULL) ||
		 (a->user && b->user && strcmp(a->user, b->user) == 0)) &&
		((a->password == NULL && b->password == NULL) ||
		 (a->password && b->password && strcmp(a->password, b->password) == 0));
}

/* The connection of server, or NULL. */
static RedisConn *
conn_find(const RedisServer *server)
{
	int			i;

	for (i = 0; i < nconns; i++)
		if (same_server(&conns[i]->server, server))
			return conns[i];
	return NULL;
}

/* Close every connection (on process exit). */
static void
close_all(int code, Datum arg)
{
	int			i;

	for (i = 0; i < nconns; i++)
		if (conns[i]->ctx)
		{
			redisFree(conns[i]->ctx);
			conns[i]->ctx = NULL;
		}
}

/* The connection of server, made (closed) on first use. */
RedisConn *
redis_conn_get(const RedisServer *server)
{
	RedisConn  *conn = conn_find(server);
	MemoryContext old;

	if (conn)
		return conn;
	if (redis_cxt == NULL)
	{
		redis_cxt = AllocSetContextCreate(TopMemoryContext, "txoutbox redis connections",
										  ALLOCSET_SMALL_SIZES);
		on_proc_exit(close_all, (Datum) 0);
	}
	old = MemoryContextSwitchTo(redis_cxt);
	if (nconns == maxconns)
	{
		maxconns = Max(4, maxconns * 2);
		conns = conns ? repalloc(conns, sizeof(RedisConn *) * maxconns) :
			palloc(sizeof(RedisConn *) * maxconns);
	}
	conn = palloc0(sizeof(RedisConn));
	conn->server.host = pstrdup(server->host);
	conn->server.port = server->port;
	conn->server.user = server->user ? pstrdup(server->user) : NULL;
	conn->server.password = server->password ? pstrdup(server->password) : NULL;
	conn->server.db = server->db;
	conn->server.shown = pstrdup(server->shown);
	conn->state = REDIS_CONN_CLOSED;
	conn->fd = PGINVALID_SOCKET;
	dlist_init(&conn->queue);
	dlist_init(&conn->pipeline);
	conns[nconns++] = conn;
	MemoryContextSwitchTo(old);
	return conn;
}

/*
 * The limit a route of server may have in flight, given its connection:
 * max_in_flight while it works (or was never tried), 0 while it is down and
 * waiting out its backoff (the route takes no messages), 1 while it is
 * being tried again after failing (a few messages probe it, rather than a
 * whole claim that would only be given back).
 */
int
redis_conn_limit(const RedisServer *server, int max_in_flight)
{
	RedisConn  *conn = conn_find(server);

	if (conn == NULL || conn->backoff.failures == 0 || conn->state == REDIS_CONN_READY)
		return max_in_flight;
	if (conn->state == REDIS_CONN_CLOSED && !netpub_backoff_ready(&conn->backoff))
		return 0;
	return 1;
}

/* Have this transport's timer call us back at when (or earlier). */
static void
schedule(TimestampTz when)
{
	if (timer_at != 0 && timer_at <= when)
		return;
	timer_at = when;
	netpub_set_timer(&redis_transport, when);
}

/* Watch conn's socket for events (0: stop). */
static void
watch(RedisConn *conn, uint32 events)
{
	if (conn->fd != PGINVALID_SOCKET)
		netpub_watch(&redis_transport, conn->fd, events);
}

/*
 * text made fit for last_error: without conn's password, then at most
 * REDIS_ERROR_TEXT bytes of printable ASCII (anything else becomes '?').
 */
static char *
safe_text(const RedisConn *conn, const char *text, size_t len)
{
	char	   *copy = pnstrdup(text, len);
	char	   *s;
	size_t		i;

	if (conn->server.password)
	{
		char	   *redacted = netpub_redact(copy, conn->server.password);

		pfree(copy);
		copy = redacted;
	}
	s = pnstrdup(copy, REDIS_ERROR_TEXT);
	for (i = 0; s[i]; i++)
		if (s[i] < 0x20 || s[i] >= 0x7f)
			s[i] = '?';
	pfree(copy);
	return s;
}

/* Take r out of its connection's (or the finishing) list. */
static void
unlink_request(RedisRequest *r)
{
	RedisConn  *conn = r->conn;

	switch (r->place)
	{
		case REDIS_REQ_NOWHERE:
			return;
		case REDIS_REQ_QUEUED:
		case REDIS_REQ_FINISHING:
			dlist_delete(&r->conn_node);
			break;
		case REDIS_REQ_PIPELINED:
			dlist_delete(&r->conn_node);
			conn->npipelined--;
			conn->pipelined_bytes -= r->command_len;
			break;
	}
	r->place = REDIS_REQ_NOWHERE;
}

/*
 * Finish r (out of every list) as unsent, or as a retry when any of its
 * command went out; now, or at the next timer when deferred (see the file
 * header).
 */
static void
finish_dropped(RedisRequest *r, bool deferred, const char *why)
{
	RedisConn  *conn = r->conn;
	bool		sent = r->place == REDIS_REQ_PIPELINED && r->first_byte < conn->written;

	unlink_request(r);
	if (!deferred)
	{
		if (sent)
			netpub_finish(&r->base, PUBLISH_RETRY, -1, "%s: %s before the XADD was answered",
						  conn->server.shown, why);
		else
			netpub_finish_unsent(&r->base, "not sent: %s: %s", conn->server.shown, why);
		return;
	}
	r->finish_outcome = PUBLISH_RETRY;
	r->finish_unsent = !sent;
	r->finish_error = MemoryContextStrdup(r->base.cxt, why);
	r->place = REDIS_REQ_FINISHING;
	dlist_push_tail(&finishing, &r->conn_node);
	schedule(GetCurrentTimestamp());
}

/* Finish the requests of connections dropped from abandon(). */
static void
finish_deferred(void)
{
	while (!dlist_is_empty(&finishing))
	{
		RedisRequest *r = dlist_container(RedisRequest, conn_node, dlist_pop_head_node(&finishing));
		const char *shown = r->conn->server.shown;

		r->place = REDIS_REQ_NOWHERE;
		if (r->finish_unsent)
			netpub_finish_unsent(&r->base, "not sent: %s: %s", shown, r->finish_error);
		else
			netpub_finish(&r->base, r->finish_outcome, -1, "%s: %s before the XADD was answered",
						  shown, r->finish_error);
	}
}

/*
 * Close conn and finish its requests (finish_dropped).  failure: it failed
 * (not a server closing an idle connection), so it backs off before the
 * next attempt, and the first failure in a row is logged.  The reason is
 * printf-style and must name no secret.
 */
static void conn_drop(RedisConn *conn, bool failure, bool deferred, const char *fmt,...)
			pg_attribute_printf(4, 5);

static void
conn_drop(RedisConn *conn, bool failure, bool deferred, const char *fmt,...)
{
	va_list		args;
	char		why[REDIS_REASON_LEN];

	va_start(args, fmt);
	vsnprintf(why, sizeof(why), fmt, args);
	va_end(args);

	watch(conn, 0);
	if (conn->ctx)
		redisFree(conn->ctx);
	conn->ctx = NULL;
	conn->fd = PGINVALID_SOCKET;
	conn->state = REDIS_CONN_CLOSED;
	conn->handshake_due = 0;
	if (failure)
	{
		strlcpy(conn->last_error, why, sizeof(conn->last_error));
		netpub_backoff_failed(&conn->backoff);
		if (!conn->outage_logged)
			ereport(LOG,
					(errmsg("txoutbox: redis publisher: %s: %s", conn->server.shown, why),
					 errdetail("Its routes are retried with backoff while it is unavailable.")));
		conn->outage_logged = true;
	}

	/* replies are lost with the connection: the pipeline first, then the queue */
	while (!dlist_is_empty(&conn->pipeline))
		finish_dropped(dlist_head_element(RedisRequest, conn_node, &conn->pipeline),
					   deferred, why);
	while (!dlist_is_empty(&conn->queue))
		finish_dropped(dlist_head_element(RedisRequest, conn_node, &conn->queue),
					   deferred, why);
	conn->npipelined = 0;
	conn->pipelined_bytes = 0;
}

/* Hand a formatted command to hiredis (in order); false when it is out of memory. */
static bool
conn_append(RedisConn *conn, const char *cmd, size_t len)
{
	if (redisAppendFormattedCommand(conn->ctx, cmd, len) != REDIS_OK)
		return false;
	conn->appended += len;
	return true;
}

/* Queue one handshake command (AUTH, SELECT): args[0..argc-1]. */
static bool
conn_append_handshake(RedisConn *conn, const char *name, int argc, const char **args)
{
	StringInfoData cmd;
	bool		ok;
	int			i;

	initStringInfo(&cmd);
	appendStringInfo(&cmd, "*%d\r\n", argc);
	for (i = 0; i < argc; i++)
		redis_append_arg(&cmd, args[i], strlen(args[i]));
	ok = conn_append(conn, cmd.data, cmd.len);
	explicit_bzero(cmd.data, cmd.len);	/* it may hold the password */
	pfree(cmd.data);
	conn->handshake[conn->handshake_due++] = name;
	return ok;
}

/* conn is up and has answered its handshake: XADDs may go. */
static void
conn_ready(RedisConn *conn)
{
	conn->state = REDIS_CONN_READY;
	if (conn->outage_logged)
		ereport(LOG,
				(errmsg("txoutbox: redis publisher: %s is reachable again", conn->server.shown)));
	conn->outage_logged = false;
}

/* conn's socket connected: send AUTH and SELECT if the url asks for them. */
static void
conn_connected(RedisConn *conn)
{
	char		db[16];

	(void) redisEnableKeepAlive(conn->ctx);
	conn->state = REDIS_CONN_HANDSHAKE;
	conn->handshake_due = 0;
	conn->handshake_next = 0;
	if (conn->server.password)
	{
		const char *args[3] = {"AUTH", conn->server.user, conn->server.password};
		bool		ok;

		if (conn->server.user)
			ok = conn_append_handshake(conn, "AUTH", 3, args);
		else
		{
			args[1] = conn->server.password;
			ok = conn_append_handshake(conn, "AUTH", 2, args);
		}
		if (!ok)
		{
			conn_drop(conn, true, false, "out of memory in hiredis");
			return;
		}
	}
	if (conn->server.db != 0)
	{
		const char *args[2] = {"SELECT", db};

		snprintf(db, sizeof(db), "%d", conn->server.db);
		if (!conn_append_handshake(conn, "SELECT", 2, args))
		{
			conn_drop(conn, true, false, "out of memory in hiredis");
			return;
		}
	}
	if (conn->handshake_due == 0)
		conn_ready(conn);
	conn_flush(conn);
}

/*
 * Start connecting conn (closed, not backing off) for a request started at
 * from with timeout_ms: that bounds the connect and the handshake (reached
 * together, this transport's timer runs before netpub's timeout, so the
 * requests are finished as not sent).  On an immediate failure the queued
 * requests are finished (not sent).
 */
static void
conn_connect(RedisConn *conn, TimestampTz from, int timeout_ms)
{
	redisContext *c = redisConnectNonBlock(conn->server.host, conn->server.port);

	if (c == NULL)
	{
		conn_drop(conn, true, false, "could not connect: out of memory");
		return;
	}
	if (c->err)
	{
		char		why[REDIS_REASON_LEN];

		snprintf(why, sizeof(why), "could not connect: %s", c->errstr);
		redisFree(c);
		conn_drop(conn, true, false, "%s", why);
		return;
	}
	conn->ctx = c;
	conn->fd = (pgsocket) c->fd;
	conn->state = REDIS_CONN_CONNECTING;
	conn->appended = 0;
	conn->written = 0;
	conn->connect_timeout_ms = Min(timeout_ms, REDIS_CONNECT_TIMEOUT_MS);
	conn->connect_deadline = TimestampTzPlusMilliseconds(from, conn->connect_timeout_ms);
	watch(conn, WL_SOCKET_WRITEABLE);
	schedule(conn->connect_deadline);
}

/*
 * Move queued requests into the pipeline while it has room (ready
 * connections only), then write what hiredis holds as far as the socket
 * takes it, and watch the socket accordingly.
 */
static void
conn_flush(RedisConn *conn)
{
	if (conn->ctx == NULL || conn->state == REDIS_CONN_CONNECTING)
		return;
	while (conn->state == REDIS_CONN_READY && !dlist_is_empty(&conn->queue))
	{
		RedisRequest *r = dlist_head_element(RedisRequest, conn_node, &conn->queue);

		if (conn->pipelined_bytes > 0 &&
			conn->pipelined_bytes + r->command_len > REDIS_PIPELINE_BYTES)
			break;
		r->first_byte = conn->appended;
		if (!conn_append(conn, r->command, r->command_len))
		{
			conn_drop(conn, true, false, "out of memory in hiredis");
			return;
		}
		dlist_delete(&r->conn_node);
		dlist_push_tail(&conn->pipeline, &r->conn_node);
		r->place = REDIS_REQ_PIPELINED;
		conn->npipelined++;
		conn->pipelined_bytes += r->command_len;
		pfree(r->command);
		r->command = NULL;
	}
	while (sdslen(conn->ctx->obuf) > 0)
	{
		size_t		before = sdslen(conn->ctx->obuf);
		int			done = 0;

		if (redisBufferWrite(conn->ctx, &done) != REDIS_OK)
		{
			conn_drop(conn, true, false, "could not send: %s", conn->ctx->errstr);
			return;
		}
		conn->written += before - sdslen(conn->ctx->obuf);
		if (sdslen(conn->ctx->obuf) == before)
			break;				/* the socket is full: wait until writable */
	}
	watch(conn, WL_SOCKET_READABLE |
		  (sdslen(conn->ctx->obuf) > 0 ? WL_SOCKET_WRITEABLE : 0));
}

/*
 * The outcome of an XADD's error reply (see the file header); *drop: the
 * connection should go too.
 */
static PublishOutcome
classify_error(const char *text, bool *drop)
{
	*drop = false;
	if (strncmp(text, "ERR Protocol error: invalid bulk length", 39) == 0)
		return PUBLISH_FAILED;
	/* since Redis 6.2.6 (CVE-2021-32675) a client that has not authenticated
	 * gets a protocol error for a command of more than 10 arguments */
	if (strncmp(text, "READONLY", 8) == 0 || strncmp(text, "NOAUTH", 6) == 0 ||
		strncmp(text, "WRONGPASS", 9) == 0 ||
		strncmp(text, "ERR Protocol error: unauthenticated", 35) == 0)
		*drop = true;
	return PUBLISH_RETRY;
}

/*
 * One reply: to the handshake while it is due, else to the head of the
 * pipeline.  Returns false when it dropped the connection.
 */
static bool
handle_reply(RedisConn *conn, redisReply *reply)
{
	RedisRequest *r;
	char	   *text;
	bool		drop;
	PublishOutcome outcome;

	if (conn->handshake_due > 0)
	{
		const char *what = conn->handshake[conn->handshake_next++];

		conn->handshake_due--;
		if (reply->type == REDIS_REPLY_ERROR)
		{
			text = safe_text(conn, reply->str, reply->len);
			conn_drop(conn, true, false, "%s failed: %s", what, text);
			return false;
		}
		netpub_backoff_reset(&conn->backoff);
		if (conn->handshake_due == 0)
		{
			conn_ready(conn);
			conn_flush(conn);
		}
		return true;
	}
	if (dlist_is_empty(&conn->pipeline))
	{
		conn_drop(conn, true, false, "a reply came that no command was waiting for");
		return false;
	}

	/* out of the pipeline before anything that may throw */
	r = dlist_head_element(RedisRequest, conn_node, &conn->pipeline);
	unlink_request(r);
	if (reply->type == REDIS_REPLY_STRING)
	{
		netpub_backoff_reset(&conn->backoff);
		netpub_finish(&r->base, PUBLISH_SUCCEEDED, -1, NULL);
		return true;
	}
	if (reply->type != REDIS_REPLY_ERROR)
	{
		netpub_finish(&r->base, PUBLISH_RETRY, -1,
					  "XADD to stream \"%s\" got an unexpected reply (type %d) from %s",
					  r->stream, reply->type, conn->server.shown);
		return true;
	}
	text = safe_text(conn, reply->str, reply->len);
	outcome = classify_error(reply->str, &drop);
	if (outcome == PUBLISH_FAILED)
		netpub_finish(&r->base, outcome, -1,
					  "XADD to stream \"%s\" refused: %s (the message is larger than the server's proto-max-bulk-len)",
					  r->stream, text);
	else
		netpub_finish(&r->base, outcome, -1, "XADD to stream \"%s\" refused: %s", r->stream, text);
	if (drop)
	{
		conn_drop(conn, true, false, "the server replied %s", text);
		return false;
	}
	return true;
}

/* Read what the socket has and hand out the replies. */
static void
conn_read(RedisConn *conn)
{
	if (redisBufferRead(conn->ctx) != REDIS_OK)
	{
		bool		busy = conn->npipelined > 0 || !dlist_is_empty(&conn->queue) ||
			conn->state != REDIS_CONN_READY;

		/* a server closing an idle connection is no failure */
		conn_drop(conn, busy, false, "connection lost: %s", conn->ctx->errstr);
		return;
	}
	for (;;)
	{
		void	   *reply = NULL;
		bool		ok;

		if (redisGetReplyFromReader(conn->ctx, &reply) != REDIS_OK)
		{
			conn_drop(conn, true, false, "could not read a reply: %s", conn->ctx->errstr);
			return;
		}
		if (reply == NULL)
			break;
		ok = handle_reply(conn, (redisReply *) reply);
		freeReplyObject(reply);
		if (!ok || conn->ctx == NULL)
			return;				/* the connection was dropped */
	}
	conn_flush(conn);			/* the pipeline may have room now */
}

/* ---- the NetTransport -------------------------------------------------- */

/*
 * NetTransport.start: queue req on its connection (connecting it when
 * closed), timing it out after the route's timeout_ms, cut to budget_ms
 * (the lease).  A connection backing off, or failing at once, finishes it
 * as not sent.
 */
static bool
redis_start(NetRequest *req, int budget_ms)
{
	RedisRequest *r = (RedisRequest *) req;
	RedisConn  *conn = r->conn;
	int			timeout_ms = Min(r->cfg_timeout_ms, budget_ms);

	if (conn->state == REDIS_CONN_CLOSED && !netpub_backoff_ready(&conn->backoff))
	{
		netpub_finish_unsent(req, "not sent: %s: %s (next try in %ld ms)",
							 conn->server.shown, conn->last_error,
							 TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															 conn->backoff.next_try));
		return false;
	}
	req->timeout_ms = timeout_ms;
	req->timeout_at = TimestampTzPlusMilliseconds(req->started_at, timeout_ms);
	r->place = REDIS_REQ_QUEUED;
	dlist_push_tail(&conn->queue, &r->conn_node);
	if (conn->state == REDIS_CONN_CLOSED)
		conn_connect(conn, req->started_at, timeout_ms);
	else if (conn->state == REDIS_CONN_READY)
		schedule(req->started_at);	/* flushed once the round's requests are in */
	return req->state == NETREQ_RUNNING;
}

/* The connection whose socket is fd, or NULL. */
static RedisConn *
conn_by_fd(pgsocket fd)
{
	int			i;

	for (i = 0; i < nconns; i++)
		if (conns[i]->ctx != NULL && conns[i]->fd == fd)
			return conns[i];
	return NULL;
}

/* NetTransport.on_socket: a connection's socket has events. */
static void
redis_on_socket(pgsocket fd, uint32 events)
{
	RedisConn  *conn = conn_by_fd(fd);

	if (conn == NULL)
	{
		netpub_watch(&redis_transport, fd, 0);	/* cannot happen */
		return;
	}
	if (conn->state == REDIS_CONN_CONNECTING)
	{
		int			err = 0;
		socklen_t	len = sizeof(err);

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err != 0)
		{
			conn_drop(conn, true, false, "could not connect: %s", strerror(err));
			return;
		}
		conn_connected(conn);
		return;
	}
	if (events & WL_SOCKET_READABLE)
	{
		conn_read(conn);
		if (conn->ctx == NULL)
			return;
	}
	if (events & WL_SOCKET_WRITEABLE)
		conn_flush(conn);
}

/*
 * NetTransport.on_timer: finish what dropped connections left, give up
 * connections that did not come up in time, flush the ready ones.
 */
static void
redis_on_timer(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	timer_at = 0;
	finish_deferred();
	for (i = 0; i < nconns; i++)
	{
		RedisConn  *conn = conns[i];

		if (conn->state == REDIS_CONN_CONNECTING || conn->state == REDIS_CONN_HANDSHAKE)
		{
			if (now >= conn->connect_deadline)
				conn_drop(conn, true, false, "could not connect: no answer within %d ms",
						  conn->connect_timeout_ms);
			else
				schedule(conn->connect_deadline);
		}
		else if (conn->state == REDIS_CONN_READY)
			conn_flush(conn);
	}
}

/*
 * NetTransport.abandon: netpub retries req (its timeout passed).  A queued
 * request just leaves; a pipelined one takes its connection down, since
 * the replies after it could not be matched (see the file header).
 */
static void
redis_abandon(NetRequest *req)
{
	RedisRequest *r = (RedisRequest *) req;

	if (r->place == REDIS_REQ_PIPELINED)
	{
		RedisConn  *conn = r->conn;

		unlink_request(r);
		conn_drop(conn, true, true, "no reply within %d ms", req->timeout_ms);
		return;
	}
	unlink_request(r);
}

/* NetTransport.release: a request is freed; it must be in no list of ours. */
static void
redis_release(NetRequest *req)
{
	unlink_request((RedisRequest *) req);
}

const NetTransport redis_transport = {
	.name = "redis",
	.request_size = sizeof(RedisRequest),
	.max_running = NULL,
	.prepare = redis_prepare,
	.start = redis_start,
	.on_socket = redis_on_socket,
	.on_timer = redis_on_timer,
	.abandon = redis_abandon,
	.release = redis_release,
};
