/*-------------------------------------------------------------------------
 *
 * nats_transport.c
 *	  The nats publisher's transport: JetStream publishes through libnats
 *	  (nats.c), their PubAcks handed back to the worker's one wait
 *	  (netpub.c), and the connections they go over.
 *
 * Threads.  libnats always runs threads of its own (a timer, callbacks,
 * a reader and a flusher per connection), and it calls the PubAck handler
 * on one of them, whatever mode it runs in (measured with libnats 3.4, 3.10
 * and 3.14).
 * So the library does its I/O on its threads, and every callback (PubAck,
 * connection events) only copies what it needs into a malloc'd event,
 * appends it to a queue under a mutex and, when the queue was empty,
 * writes to an eventfd that netpub's WaitEventSet watches.  The main
 * thread drains the eventfd first, then takes the whole queue
 * (natspub_take_results), so no wake-up is lost.  Nothing but the main
 * thread calls into PostgreSQL.  Every call that may start a library
 * thread (nats_Open, the connect, the first asynchronous publish of a
 * context, which subscribes the PubAck inbox) runs with all signals
 * blocked, so the library's threads inherit a full mask and PostgreSQL's
 * signals (SIGTERM, SIGHUP, SIGUSR1 for latches...) reach only the main
 * thread.  Event-loop mode was measured and not used: it removes only the
 * reader thread, calls its adapter from other threads, and cannot run a
 * synchronous request.
 *
 * Publishes are asynchronous (js_PublishMsgAsync); libnats' own limit on
 * them is off (it would block the caller), netpub keeps at most the
 * route's max_in_flight outstanding.  A PubAck comes back with the natsMsg
 * that was published, so requests are found by that pointer (a map of the
 * messages libnats holds): a message is libnats' from the publish until
 * its PubAck handler hands it back, so no two live requests share one.
 * Each publish carries its own MaxWait (libnats then reports NATS_TIMEOUT,
 * and forgets it); netpub's timeout, a little later, is the safety net.
 * A request netpub abandons is taken out of the map; its late PubAck is
 * dropped.
 *
 * Connections, one per server and user info, shared by the routes that
 * name them, live until the process exits, or until no route has used
 * them for a minute (their routes were removed or changed).  The first one
 * is opened when a route is first used; the connect runs on a thread of
 * ours (it may block on DNS or a silent host), and requests started
 * meanwhile wait for it ("parked").  Once up, libnats reconnects by itself
 * after the broker drops it or restarts; while it is down the routes have
 * no capacity (nothing more is claimed: messages wait in the table,
 * untouched) and a request that was still waiting is given back unsent.
 * What was in flight when it dropped gets no PubAck and times out, and is
 * retried with the same Nats-Msg-Id, which the stream drops as a duplicate
 * if the first copy got there.  A connect that fails, and a connection
 * libnats closes (auth), are tried again with NetBackoff, by a timer and
 * without claiming anything; the first requests of a route carry the
 * reason of a failed first connect into last_error.  When a connection
 * comes up the latch is set, so the dispatcher claims for it at once.
 *
 * Nothing here blocks the main thread for long: publishes only append to
 * libnats' buffer (and flush it when full, bounded by a write deadline),
 * the connect runs elsewhere, and closing a connection (libnats closed it,
 * or it is idle) only joins its threads.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifdef TXOUTBOX_WITH_NATS

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <nats/nats.h>

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "nats.h"

#define NATS_CONNECT_TIMEOUT_MS		2000	/* per connect, on our thread */
#define NATS_RECONNECT_WAIT_MS		250 /* libnats' reconnects, plus jitter */
#define NATS_RECONNECT_JITTER_MS	100
#define NATS_PING_INTERVAL_MS		5000	/* a silent server is dropped after
											 * two unanswered pings */
#define NATS_MAX_PINGS_OUT			2
#define NATS_WRITE_DEADLINE_MS		1000	/* longest a full socket blocks a
											 * publish */
#define NATS_IO_BUFFER				(256 * 1024)
#define NATS_EXPIRY_SLACK_MS		200 /* netpub's timeout after libnats' */
#define NATS_ASYNC_ERROR_MS			60000	/* an async error is shown with
											 * timeouts for this long */
#define NATS_FORGET_MS				60000	/* close (or stop retrying) a
											 * connection no route used for
											 * this long */
#define NATS_CLOSE_WAIT_MS			1000
#define NATS_TEXT_LEN				256

typedef enum NatsConnState
{
	NATS_CONN_DOWN,				/* no connection: try when backoff allows */
	NATS_CONN_CONNECTING,		/* our connect thread runs */
	NATS_CONN_UP,
	NATS_CONN_RECONNECTING		/* dropped: libnats reconnects */
} NatsConnState;

typedef struct NatsConn
{
	struct NatsConn *next;
	char	   *server;			/* as NatsRoute: TopMemoryContext */
	char	   *user;
	char	   *password;
	char	   *token;
	char	   *shown;
	NatsConnState state;
	natsConnection *nc;
	jsCtx	   *js;
	bool		ack_inbox_made; /* the first publish subscribed it */
	NetBackoff	backoff;
	TimestampTz last_used;
	dlist_head	parked;			/* requests waiting for it to come up */
	dlist_head	in_library;		/* requests awaiting their PubAck */
	char		down_reason[NATS_TEXT_LEN]; /* why it is down; no secret */
	char		async_error[NATS_TEXT_LEN]; /* the server's last complaint */
	TimestampTz async_error_at;
} NatsConn;

/* What a library thread hands to the main thread (malloc'd). */
typedef enum NatsEventKind
{
	NATS_EV_ACK,				/* a PubAck, an error or a timeout for msg */
	NATS_EV_CONNECTED,			/* our connect thread is done: nc, status */
	NATS_EV_CHANGED,			/* the connection's status may have changed */
	NATS_EV_ASYNC_ERROR			/* the server complained (text) */
} NatsEventKind;

typedef struct NatsEvent
{
	struct NatsEvent *next;
	NatsEventKind kind;
	NatsConn   *conn;
	natsMsg    *msg;
	natsConnection *nc;
	natsStatus	status;
	int			errcode;
	bool		duplicate;
	char		text[FLEXIBLE_ARRAY_MEMBER];
} NatsEvent;

/* The messages libnats holds, by address: the request each belongs to. */
typedef struct InLibraryEntry
{
	natsMsg    *msg;
	NatsRequest *req;
	char		status;
} InLibraryEntry;

static inline uint32
msg_hash(natsMsg *msg)
{
	uint64		p = (uint64) (uintptr_t) msg;

	return murmurhash32((uint32) (p >> 4) ^ (uint32) (p >> 36));
}

#define SH_PREFIX		inlib
#define SH_ELEMENT_TYPE InLibraryEntry
#define SH_KEY_TYPE		natsMsg *
#define SH_KEY			msg
#define SH_HASH_KEY(tb, key) msg_hash(key)
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* libnats and our side of it, set up once per process */
static bool library_ready = false;
static sigset_t all_signals;
static int	wake_fd = -1;
static inlib_hash *in_library = NULL;
static NatsConn *conns = NULL;

/* the queue from library threads; taken: main thread only */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static NatsEvent *queue_head = NULL;
static NatsEvent *queue_tail = NULL;
static NatsEvent *taken_head = NULL;
static NatsEvent *taken_tail = NULL;

/* Run stmt with every signal blocked: threads it starts inherit the mask. */
#define WITH_SIGNALS_BLOCKED(stmt) \
	do { \
		sigset_t	save_; \
		pthread_sigmask(SIG_BLOCK, &all_signals, &save_); \
		stmt; \
		pthread_sigmask(SIG_SETMASK, &save_, NULL); \
	} while (0)

static void conn_schedule_retry(void);

/* ---- the queue (library threads -> main thread) -------------------------- */

/* A new event with room for text (library threads: malloc, no PostgreSQL). */
static NatsEvent *
event_new(NatsEventKind kind, NatsConn *conn, const char *text)
{
	size_t		len = text ? strlen(text) : 0;
	NatsEvent  *ev;

	if (len >= NATS_TEXT_LEN)
		len = NATS_TEXT_LEN - 1;
	ev = malloc(offsetof(NatsEvent, text) + len + 1);
	if (ev == NULL)
		return NULL;
	memset(ev, 0, offsetof(NatsEvent, text));
	ev->kind = kind;
	ev->conn = conn;
	if (len > 0)
		memcpy(ev->text, text, len);
	ev->text[len] = '\0';
	return ev;
}

/* Append ev to the queue and wake the main thread if it was empty. */
static void
event_push(NatsEvent *ev)
{
	bool		was_empty;

	pthread_mutex_lock(&queue_lock);
	was_empty = (queue_head == NULL);
	ev->next = NULL;
	if (queue_tail)
		queue_tail->next = ev;
	else
		queue_head = ev;
	queue_tail = ev;
	pthread_mutex_unlock(&queue_lock);
	if (was_empty)
	{
		uint64		one = 1;
		ssize_t		rc = write(wake_fd, &one, sizeof(one));

		(void) rc;				/* EAGAIN: it is set already */
	}
}

/* Main thread: drain the eventfd, then move the queue to the taken list. */
static void
events_take(void)
{
	uint64		count;
	ssize_t		rc = read(wake_fd, &count, sizeof(count));

	(void) rc;					/* EAGAIN: nothing was written */
	pthread_mutex_lock(&queue_lock);
	if (queue_head)
	{
		if (taken_tail)
			taken_tail->next = queue_head;
		else
			taken_head = queue_head;
		taken_tail = queue_tail;
		queue_head = queue_tail = NULL;
	}
	pthread_mutex_unlock(&queue_lock);
}

/* ---- libnats callbacks (library threads: no PostgreSQL here) -------------- */

/* jsPubAckHandler: a PubAck (pa), an error or a timeout (pae) for msg. */
static void
on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	NatsEvent  *ev = event_new(NATS_EV_ACK, (NatsConn *) closure,
							   pa == NULL && pae != NULL ? pae->ErrText : NULL);

	if (ev == NULL)
	{
		/* out of memory: the request times out in netpub */
		natsMsg_Destroy(msg);
		return;
	}
	ev->msg = msg;				/* ours now */
	if (pa != NULL)
	{
		ev->status = NATS_OK;
		ev->duplicate = pa->Duplicate;
	}
	else
	{
		ev->status = pae ? pae->Err : NATS_ERR;
		ev->errcode = pae ? (int) pae->ErrCode : 0;
	}
	event_push(ev);
}

/* natsConnectionHandler (disconnected, reconnected, closed). */
static void
on_conn_changed(natsConnection *nc, void *closure)
{
	NatsEvent  *ev = event_new(NATS_EV_CHANGED, (NatsConn *) closure, NULL);

	if (ev)
		event_push(ev);
}

/* natsErrHandler: an asynchronous error (a permissions violation, ...). */
static void
on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
	const char *text = NULL;
	NatsEvent  *ev;

	if (natsConnection_GetLastError(nc, &text) == NATS_OK || text == NULL || text[0] == '\0')
		text = natsStatus_GetText(err);
	ev = event_new(NATS_EV_ASYNC_ERROR, (NatsConn *) closure, text);
	if (ev)
	{
		ev->status = err;
		event_push(ev);
	}
}

/*
 * libnats' error text without the "(conn.c:2088): " it starts with (pure C:
 * library threads call it too).
 */
static const char *
without_location(const char *text)
{
	const char *end;

	if (text == NULL || text[0] != '(' || (end = strstr(text, "): ")) == NULL)
		return text;
	return end + 3;
}

/* Our connect thread's job. */
typedef struct ConnectJob
{
	NatsConn   *conn;
	natsOptions *opts;
} ConnectJob;

/* The connect thread: connect (it may block), then report. */
static void *
connect_main(void *arg)
{
	ConnectJob *job = (ConnectJob *) arg;
	natsConnection *nc = NULL;
	natsStatus	s = natsConnection_Connect(&nc, job->opts);
	const char *text = s == NATS_OK ? NULL : without_location(nats_GetLastError(NULL));
	NatsEvent  *ev = event_new(NATS_EV_CONNECTED, job->conn,
							   text && text[0] ? text : (s == NATS_OK ? NULL : natsStatus_GetText(s)));

	natsOptions_Destroy(job->opts);
	if (ev == NULL)
	{
		/* cannot report: give up this one; the connection stays CONNECTING */
		if (nc)
			natsConnection_Destroy(nc);
		free(job);
		return NULL;
	}
	ev->nc = nc;
	ev->status = s;
	free(job);
	event_push(ev);
	return NULL;
}

/* ---- set-up and tear-down ------------------------------------------------ */

/* Close every connection when the process exits. */
static void
natspub_shutdown(int code, Datum arg)
{
	NatsConn   *c;
	bool		connecting = false;

	for (c = conns; c; c = c->next)
	{
		if (c->state == NATS_CONN_CONNECTING)
			connecting = true;
		if (c->js)
			WITH_SIGNALS_BLOCKED(jsCtx_Destroy(c->js));
		if (c->nc)
			WITH_SIGNALS_BLOCKED(natsConnection_Destroy(c->nc));
		c->js = NULL;
		c->nc = NULL;
	}
	/* a connect thread still in libnats must not see it closed under it */
	if (!connecting)
		WITH_SIGNALS_BLOCKED((void) nats_CloseAndWait(NATS_CLOSE_WAIT_MS));
}

/*
 * Set up libnats (its global threads start now, with every signal blocked),
 * the eventfd netpub watches, and the map.  Returns false, with *why set,
 * when that failed (it is tried again at the next connect).
 */
static bool
library_init(const char **why)
{
	natsStatus	s;

	if (library_ready)
		return true;
	sigfillset(&all_signals);
	if (wake_fd < 0)
	{
		wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (wake_fd < 0)
		{
			*why = "could not create an eventfd";
			return false;
		}
	}
	WITH_SIGNALS_BLOCKED(s = nats_Open(-1));
	if (s != NATS_OK)
	{
		*why = "could not start libnats";
		return false;
	}
	in_library = inlib_create(TopMemoryContext, 1024, NULL);
	netpub_watch(&natspub_transport, wake_fd, WL_SOCKET_READABLE);
	on_proc_exit(natspub_shutdown, (Datum) 0);
	library_ready = true;
	return true;
}

/*
 * text into out (outlen bytes, cut short if need be) with the connection's
 * password and token replaced by "***".  No allocation: this runs in
 * whatever memory context the wait left current.
 */
static void
redact_into(const NatsConn *c, const char *text, char *out, size_t outlen)
{
	size_t		n = 0;

	while (*text && n + 1 < outlen)
	{
		const char *secrets[2] = {c->password, c->token};
		bool		hit = false;
		int			i;

		for (i = 0; i < 2 && !hit; i++)
		{
			size_t		len = secrets[i] ? strlen(secrets[i]) : 0;

			if (len > 0 && strncmp(text, secrets[i], len) == 0)
			{
				n += strlcpy(out + n, "***", outlen - n);
				n = Min(n, outlen - 1);
				text += len;
				hit = true;
			}
		}
		if (!hit)
			out[n++] = *text++;
	}
	out[n] = '\0';
}

/* Strings equal, NULL equal to NULL. */
static bool
same(const char *a, const char *b)
{
	return (a == NULL) ? (b == NULL) : (b != NULL && strcmp(a, b) == 0);
}

/*
 * The connection route publishes over (the same server and user info),
 * created (down, nothing opened) on first use.
 */
NatsConn *
natspub_conn_for(const NatsRoute *route)
{
	NatsConn   *c;
	MemoryContext old;

	for (c = conns; c; c = c->next)
		if (strcmp(c->server, route->server) == 0 && same(c->user, route->user) &&
			same(c->password, route->password) && same(c->token, route->token))
			return c;
	old = MemoryContextSwitchTo(TopMemoryContext);
	c = palloc0(sizeof(NatsConn));
	c->server = pstrdup(route->server);
	c->user = route->user ? pstrdup(route->user) : NULL;
	c->password = route->password ? pstrdup(route->password) : NULL;
	c->token = route->token ? pstrdup(route->token) : NULL;
	c->shown = pstrdup(route->shown);
	dlist_init(&c->parked);
	dlist_init(&c->in_library);
	MemoryContextSwitchTo(old);
	c->state = NATS_CONN_DOWN;
	c->next = conns;
	conns = c;
	return c;
}

/* ---- connections --------------------------------------------------------- */

/* Send every parked request of c (it just came up). */
static void send_request(NatsRequest *r);

static void
send_parked(NatsConn *c)
{
	while (!dlist_is_empty(&c->parked))
	{
		NatsRequest *r = dlist_container(NatsRequest, conn_node, dlist_pop_head_node(&c->parked));

		r->parked = false;
		send_request(r);
	}
}

/* Give back c's parked requests unsent: why (a reason without secrets). */
static void
unsend_parked(NatsConn *c, const char *why)
{
	while (!dlist_is_empty(&c->parked))
	{
		NatsRequest *r = dlist_container(NatsRequest, conn_node, dlist_pop_head_node(&c->parked));

		r->parked = false;
		netpub_finish_unsent(&r->base, "not sent: %s", why);
	}
}

/*
 * c is down: remember why (fmt..., redacted), log it when that changed,
 * back off, give its parked requests back.
 */
static void conn_down(NatsConn *c, const char *fmt,...) pg_attribute_printf(2, 3);

static void
conn_down(NatsConn *c, const char *fmt,...)
{
	char		text[NATS_TEXT_LEN];
	char		why[NATS_TEXT_LEN];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	redact_into(c, text, why, sizeof(why));

	c->state = NATS_CONN_DOWN;
	netpub_backoff_failed(&c->backoff);
	if (strcmp(c->down_reason, why) != 0)
		ereport(LOG,
				(errmsg("txoutbox: nats: %s; trying again with backoff", why)));
	strlcpy(c->down_reason, why, sizeof(c->down_reason));
	unsend_parked(c, c->down_reason);
	conn_schedule_retry();
}

/*
 * Start connecting c on a thread of ours (it may block): the outcome comes
 * back as an event.  On a failure to even start, c is down.
 */
static void
conn_connect(NatsConn *c)
{
	const char *why = NULL;
	natsOptions *o = NULL;
	ConnectJob *job;
	pthread_attr_t attr;
	pthread_t	tid;
	natsStatus	s;
	int			rc;

	if (!library_init(&why))
	{
		conn_down(c, "could not connect to %s: %s", c->shown, why);
		return;
	}
	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetURL(o, c->server);
	if (s == NATS_OK && c->user)
		s = natsOptions_SetUserInfo(o, c->user, c->password);
	if (s == NATS_OK && c->token)
		s = natsOptions_SetToken(o, c->token);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, "txoutbox");
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, NATS_CONNECT_TIMEOUT_MS);
	if (s == NATS_OK)
		s = natsOptions_SetAllowReconnect(o, true);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, NATS_RECONNECT_WAIT_MS);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectJitter(o, NATS_RECONNECT_JITTER_MS, NATS_RECONNECT_JITTER_MS);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(o, NATS_PING_INTERVAL_MS);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, NATS_MAX_PINGS_OUT);
	if (s == NATS_OK)
		s = natsOptions_SetWriteDeadline(o, NATS_WRITE_DEADLINE_MS);
	if (s == NATS_OK)
		s = natsOptions_SetIOBufSize(o, NATS_IO_BUFFER);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, on_conn_changed, c);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, on_conn_changed, c);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, on_conn_changed, c);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, on_async_error, c);
	job = s == NATS_OK ? malloc(sizeof(ConnectJob)) : NULL;
	if (job == NULL)
	{
		if (o)
			natsOptions_Destroy(o);
		conn_down(c, "could not connect to %s: could not set up the connection options", c->shown);
		return;
	}
	job->conn = c;
	job->opts = o;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	WITH_SIGNALS_BLOCKED(rc = pthread_create(&tid, &attr, connect_main, job));
	pthread_attr_destroy(&attr);
	if (rc != 0)
	{
		natsOptions_Destroy(o);
		free(job);
		conn_down(c, "could not connect to %s: could not start a thread", c->shown);
		return;
	}
	c->state = NATS_CONN_CONNECTING;
}

/* Our connect thread reports: c is up (nc), or why it is not. */
static void
conn_connected(NatsConn *c, natsConnection *nc, natsStatus s, const char *text)
{
	jsOptions	jo;

	if (s == NATS_OK)
	{
		jsOptions_Init(&jo);
		jo.PublishAsync.AckHandler = on_pub_ack;
		jo.PublishAsync.AckHandlerClosure = c;
		jo.PublishAsync.MaxPending = 0; /* netpub limits it; libnats would block */
		WITH_SIGNALS_BLOCKED(s = natsConnection_JetStream(&c->js, nc, &jo));
		if (s != NATS_OK)
		{
			WITH_SIGNALS_BLOCKED(natsConnection_Destroy(nc));
			c->js = NULL;
			conn_down(c, "could not connect to %s: could not make a JetStream context", c->shown);
			return;
		}
		c->nc = nc;
		c->ack_inbox_made = false;
		c->state = NATS_CONN_UP;
		netpub_backoff_reset(&c->backoff);
		c->down_reason[0] = '\0';
		ereport(LOG, (errmsg("txoutbox: nats: connected to %s", c->shown)));
		send_parked(c);
		SetLatch(MyLatch);		/* claim for its routes now */
		return;
	}
	conn_down(c, "could not connect to %s: %s", c->shown, text);
}

/* Finish every request of c awaiting a PubAck: its connection closed (why). */
static void
fail_in_library(NatsConn *c, const char *shown, const char *why)
{
	while (!dlist_is_empty(&c->in_library))
	{
		NatsRequest *r = dlist_container(NatsRequest, conn_node, dlist_pop_head_node(&c->in_library));

		inlib_delete(in_library, (natsMsg *) r->lib_msg);
		r->in_library = false;
		netpub_finish(&r->base, PUBLISH_RETRY, -1, "no PubAck: the connection to %s was closed: %s",
					  shown, why);
	}
}

/* libnats says c's status changed: read it, and follow. */
static void
conn_changed(NatsConn *c)
{
	natsConnStatus st;

	if (c->nc == NULL)
		return;					/* an event of a connection already gone */
	st = natsConnection_Status(c->nc);
	if (st == NATS_CONN_STATUS_CONNECTED)
	{
		if (c->state != NATS_CONN_UP)
		{
			c->state = NATS_CONN_UP;
			netpub_backoff_reset(&c->backoff);
			c->down_reason[0] = '\0';
			ereport(LOG, (errmsg("txoutbox: nats: reconnected to %s", c->shown)));
			SetLatch(MyLatch);
		}
	}
	else if (st == NATS_CONN_STATUS_CLOSED)
	{
		const char *text = NULL;
		char		why[NATS_TEXT_LEN];

		if (natsConnection_GetLastError(c->nc, &text) == NATS_OK || text == NULL || text[0] == '\0')
			text = "closed by libnats";
		redact_into(c, text, why, sizeof(why));
		fail_in_library(c, c->shown, why);
		WITH_SIGNALS_BLOCKED(jsCtx_Destroy(c->js));
		WITH_SIGNALS_BLOCKED(natsConnection_Destroy(c->nc));
		c->js = NULL;
		c->nc = NULL;
		conn_down(c, "the connection to %s was closed: %s", c->shown, why);
	}
	else if (c->state == NATS_CONN_UP)
	{
		c->state = NATS_CONN_RECONNECTING;
		snprintf(c->down_reason, sizeof(c->down_reason),
				 "the connection to %s is down (libnats is reconnecting)", c->shown);
		ereport(LOG, (errmsg("txoutbox: nats: lost the connection to %s; reconnecting", c->shown)));
	}
}

/*
 * Retry the down connections that routes still use, each when its backoff
 * allows (netpub's timer), without claiming anything for them; set the
 * timer for the next one.
 */
static void
conn_schedule_retry(void)
{
	TimestampTz next = 0;
	TimestampTz now = GetCurrentTimestamp();
	NatsConn   *c;

	for (c = conns; c; c = c->next)
	{
		if (c->state != NATS_CONN_DOWN || c->backoff.failures == 0 ||
			TimestampDifferenceExceeds(c->last_used, now, NATS_FORGET_MS))
			continue;
		if (next == 0 || c->backoff.next_try < next)
			next = c->backoff.next_try;
	}
	netpub_set_timer(&natspub_transport, next);
}

/* NetTransport.on_timer: retry the connections whose backoff is over. */
static void
natspub_on_timer(void)
{
	TimestampTz now = GetCurrentTimestamp();
	NatsConn   *c;

	for (c = conns; c; c = c->next)
		if (c->state == NATS_CONN_DOWN && c->backoff.failures > 0 &&
			!TimestampDifferenceExceeds(c->last_used, now, NATS_FORGET_MS) &&
			netpub_backoff_ready(&c->backoff))
			conn_connect(c);
	conn_schedule_retry();
}

/*
 * Close the connections no route used for NATS_FORGET_MS that have nothing
 * in flight (their routes were removed or changed).
 */
static void
close_idle(TimestampTz now)
{
	NatsConn   *c;

	for (c = conns; c; c = c->next)
	{
		if (c->nc == NULL || !dlist_is_empty(&c->in_library) || !dlist_is_empty(&c->parked) ||
			!TimestampDifferenceExceeds(c->last_used, now, NATS_FORGET_MS))
			continue;
		WITH_SIGNALS_BLOCKED(jsCtx_Destroy(c->js));
		WITH_SIGNALS_BLOCKED(natsConnection_Destroy(c->nc));
		c->js = NULL;
		c->nc = NULL;
		c->state = NATS_CONN_DOWN;
		netpub_backoff_reset(&c->backoff);
		c->down_reason[0] = '\0';
		ereport(LOG, (errmsg("txoutbox: nats: closed the connection to %s (no route used it for %d s)",
							 c->shown, NATS_FORGET_MS / 1000)));
	}
}

/*
 * How many more messages route (max_in_flight at once) takes now over c:
 * none while c is down after a failure or reconnecting (the backoff's
 * retry, if due, starts); before its first connect, as if it were up (its
 * requests wait for the connect).
 */
int
natspub_conn_capacity(NatsConn *c, const OutboxRoute *route, int max_in_flight)
{
	c->last_used = GetCurrentTimestamp();
	natspub_take_results();
	close_idle(c->last_used);
	switch (c->state)
	{
		case NATS_CONN_UP:
			break;
		case NATS_CONN_CONNECTING:
			if (c->backoff.failures > 0)
				return 0;
			break;
		case NATS_CONN_DOWN:
			if (c->backoff.failures == 0)
				break;
			if (netpub_backoff_ready(&c->backoff))
				conn_connect(c);
			return 0;
		case NATS_CONN_RECONNECTING:
			return 0;
	}
	return netpub_capacity(&natspub_transport, route, max_in_flight);
}

/* ---- requests ------------------------------------------------------------ */

/* The outcome of a publish libnats refused at once (status s, its text). */
static void
finish_refused(NatsRequest *r, natsStatus s, const char *text)
{
	NatsConn   *c = r->conn;
	char		what[NATS_TEXT_LEN];

	redact_into(c, text && text[0] ? text : natsStatus_GetText(s), what, sizeof(what));

	switch (s)
	{
		case NATS_MAX_PAYLOAD:
			netpub_finish(&r->base, PUBLISH_FAILED, -1,
						  "message of %d bytes is larger than the server's max_payload (%lld bytes)",
						  r->body_len, (long long) natsConnection_GetMaxPayload(c->nc));
			break;
		case NATS_INVALID_SUBJECT:
			netpub_finish(&r->base, PUBLISH_FAILED, -1, "libnats refused the subject: %s", what);
			break;
		case NATS_CONNECTION_CLOSED:
		case NATS_CONNECTION_DISCONNECTED:
		case NATS_NOT_YET_CONNECTED:
		case NATS_NO_SERVER_SUPPORT:
		case NATS_INSUFFICIENT_BUFFER:
		case NATS_DRAINING:
		case NATS_NO_MEMORY:
			netpub_finish_unsent(&r->base, "not sent to %s: %s", c->shown, what);
			break;
		default:
			netpub_finish(&r->base, PUBLISH_RETRY, -1, "publish to %s failed: %s", c->shown, what);
			break;
	}
}

/* Publish r over its connection (up); its outcome comes as a PubAck. */
static void
send_request(NatsRequest *r)
{
	NatsConn   *c = r->conn;
	natsMsg    *m = NULL;
	natsMsg    *sent;
	jsPubOptions po;
	natsStatus	s;
	long		wait_ms;
	bool		found;
	InLibraryEntry *e;
	int			i;

	s = natsMsg_Create(&m, r->subject, NULL, r->body, r->body_len);
	for (i = 0; s == NATS_OK && i < r->nheaders; i++)
		s = natsMsgHeader_Set(m, r->header_names[i], r->header_values[i]);
	if (s != NATS_OK)
	{
		natsMsg_Destroy(m);
		finish_refused(r, s, without_location(nats_GetLastError(NULL)));
		return;
	}
	jsPubOptions_Init(&po);
	po.MsgId = r->base.msg.id_str;
	wait_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), r->ack_by);
	po.MaxWait = Max(wait_ms, 1);
	sent = m;
	if (!c->ack_inbox_made)
	{
		/* the first publish subscribes the PubAck inbox: a new thread */
		WITH_SIGNALS_BLOCKED(s = js_PublishMsgAsync(c->js, &m, &po));
		c->ack_inbox_made = (s == NATS_OK);
	}
	else
		s = js_PublishMsgAsync(c->js, &m, &po);
	if (s != NATS_OK)
	{
		const char *text = without_location(nats_GetLastError(NULL));

		natsMsg_Destroy(m);		/* still ours */
		finish_refused(r, s, text);
		return;
	}
	/* libnats holds sent now, until its PubAck handler hands it back */
	r->in_library = true;
	r->lib_msg = sent;
	dlist_push_tail(&c->in_library, &r->conn_node);
	e = inlib_insert(in_library, sent, &found);
	e->req = r;
}

/*
 * NetTransport.start: publish r, expecting its PubAck within its timeout
 * (the route's, cut to the budget its lease leaves); while its connection
 * comes up it waits for it, while it is down it is given back unsent.
 */
static bool
natspub_start(NetRequest *req, int budget_ms)
{
	NatsRequest *r = (NatsRequest *) req;
	NatsConn   *c = r->conn;
	TimestampTz now = GetCurrentTimestamp();
	int			t = r->cfg_timeout_ms;

	if ((int64) budget_ms - NATS_EXPIRY_SLACK_MS < t)
		t = Max(budget_ms - NATS_EXPIRY_SLACK_MS, 1);
	r->timeout_ms = t;
	r->ack_by = TimestampTzPlusMilliseconds(now, t);
	req->timeout_ms = t;
	req->timeout_at = TimestampTzPlusMilliseconds(r->ack_by, NATS_EXPIRY_SLACK_MS);
	c->last_used = now;

	if (c->state == NATS_CONN_DOWN &&
		(c->backoff.failures == 0 || netpub_backoff_ready(&c->backoff)))
		conn_connect(c);
	switch (c->state)
	{
		case NATS_CONN_UP:
			send_request(r);
			return r->in_library;
		case NATS_CONN_CONNECTING:
			r->parked = true;
			dlist_push_tail(&c->parked, &r->conn_node);
			return true;
		case NATS_CONN_DOWN:
		case NATS_CONN_RECONNECTING:
			break;
	}
	netpub_finish_unsent(req, "not sent: %s", c->down_reason);
	return false;
}

/* Finish r from its PubAck event ev. */
static void
finish_acked(NatsRequest *r, const NatsEvent *ev)
{
	NatsConn   *c = r->conn;
	char		text[NATS_TEXT_LEN];

	if (ev->status == NATS_OK)
	{
		netpub_finish(&r->base, PUBLISH_SUCCEEDED, -1, NULL);
		return;
	}
	if (ev->status == NATS_TIMEOUT)
	{
		if (c->state != NATS_CONN_UP && c->down_reason[0])
			netpub_finish(&r->base, PUBLISH_RETRY, -1, "no PubAck within %d ms: %s",
						  r->timeout_ms, c->down_reason);
		else if (c->async_error[0] &&
				 !TimestampDifferenceExceeds(c->async_error_at, GetCurrentTimestamp(), NATS_ASYNC_ERROR_MS))
			netpub_finish(&r->base, PUBLISH_RETRY, -1, "no PubAck within %d ms from %s (the server said: %s)",
						  r->timeout_ms, c->shown, c->async_error);
		else
			netpub_finish(&r->base, PUBLISH_RETRY, -1, "no PubAck within %d ms from %s",
						  r->timeout_ms, c->shown);
		return;
	}
	if (ev->status == NATS_NO_RESPONDERS)
	{
		netpub_finish(&r->base, PUBLISH_RETRY, -1,
					  "no stream listens on subject \"%.200s\" at %s (no responders)",
					  r->subject, c->shown);
		return;
	}
	if (ev->errcode != 0)
	{
		/* a message over the stream's size limit cannot be stored, ever */
		PublishOutcome outcome = ev->errcode == JSStreamMessageExceedsMaximumErr ?
			PUBLISH_FAILED : PUBLISH_RETRY;

		redact_into(c, ev->text[0] ? ev->text : "no reason given", text, sizeof(text));
		netpub_finish(&r->base, outcome, -1, "the stream refused the message: %s (JetStream error %d)",
					  text, ev->errcode);
		return;
	}
	redact_into(c, ev->text[0] ? ev->text : natsStatus_GetText(ev->status), text, sizeof(text));
	netpub_finish(&r->base, PUBLISH_RETRY, -1, "publish to %s failed: %s", c->shown, text);
}

/* Handle one event from a library thread. */
static void
handle_event(NatsEvent *ev)
{
	switch (ev->kind)
	{
		case NATS_EV_ACK:
			{
				InLibraryEntry *e = inlib_lookup(in_library, ev->msg);
				NatsRequest *r = e ? e->req : NULL;

				natsMsg_Destroy(ev->msg);
				if (r == NULL)
					return;		/* abandoned: netpub retried it already */
				inlib_delete_item(in_library, e);
				dlist_delete(&r->conn_node);
				r->in_library = false;
				finish_acked(r, ev);
				return;
			}
		case NATS_EV_CONNECTED:
			if (ev->conn->state == NATS_CONN_CONNECTING)
				conn_connected(ev->conn, ev->nc, ev->status, ev->text);
			else if (ev->nc)
				WITH_SIGNALS_BLOCKED(natsConnection_Destroy(ev->nc));
			if (ev->conn->nc)
				conn_changed(ev->conn); /* it may have dropped already */
			return;
		case NATS_EV_CHANGED:
			conn_changed(ev->conn);
			return;
		case NATS_EV_ASYNC_ERROR:
			{
				NatsConn   *c = ev->conn;
				char		text[NATS_TEXT_LEN];

				redact_into(c, ev->text, text, sizeof(text));
				if (strcmp(c->async_error, text) != 0)
					ereport(LOG, (errmsg("txoutbox: nats: %s reported: %s", c->shown, text)));
				strlcpy(c->async_error, text, sizeof(c->async_error));
				c->async_error_at = GetCurrentTimestamp();
				return;
			}
	}
}

/*
 * Handle what the library threads reported since the last call: finish
 * the requests whose PubAcks came, follow the connections.  Main thread;
 * no transaction needed.  One event at a time off the taken list, so an
 * ERROR leaves the rest for the next call.
 */
void
natspub_take_results(void)
{
	if (!library_ready)
		return;
	events_take();
	while (taken_head)
	{
		NatsEvent  *ev = taken_head;

		taken_head = ev->next;
		if (taken_head == NULL)
			taken_tail = NULL;
		PG_TRY();
		{
			handle_event(ev);
		}
		PG_FINALLY();
		{
			free(ev);
		}
		PG_END_TRY();
	}
}

/* NetTransport.on_socket: the eventfd is readable. */
static void
natspub_on_socket(pgsocket fd, uint32 events)
{
	natspub_take_results();
}

/* NetTransport.abandon: forget a running request (netpub retries it). */
static void
natspub_abandon(NetRequest *req)
{
	NatsRequest *r = (NatsRequest *) req;

	if (r->parked)
	{
		dlist_delete(&r->conn_node);
		r->parked = false;
	}
	if (r->in_library)
	{
		/* its natsMsg stays libnats' until the PubAck (or timeout) hands it back */
		inlib_delete(in_library, (natsMsg *) r->lib_msg);
		dlist_delete(&r->conn_node);
		r->in_library = false;
	}
}

const NetTransport natspub_transport = {
	.name = "nats",
	.request_size = sizeof(NatsRequest),
	.max_running = NULL,
	.prepare = natspub_request_prepare,
	.start = natspub_start,
	.on_socket = natspub_on_socket,
	.on_timer = natspub_on_timer,
	.abandon = natspub_abandon,
	.release = natspub_abandon,
};

#endif							/* TXOUTBOX_WITH_NATS */
