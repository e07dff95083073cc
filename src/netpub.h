/*-------------------------------------------------------------------------
 *
 * netpub.h
 *	  The machinery the network publishers (http, nats, amqp, redis) share
 *	  (netpub.c): requests in flight across rounds, per-route accounting
 *	  and capacity, leases (no request runs past its claim's lease),
 *	  outcomes collected across rounds, one wait on every socket + the latch
 *	  + postmaster death, reconnect backoff, and secret redaction.
 *
 * A network publisher is split in two: its Publisher (publisher.h: config,
 * capacity, publish) and a NetTransport, the protocol: it turns a request
 * into bytes on a socket and its answer into an outcome.  netpub owns every
 * request from the moment publish() hands it over until the dispatcher
 * collects its outcome:
 *
 *	 waiting --start()--> running --netpub_finish()--> done --collect--> freed
 *
 * A request waits while its route or its transport is at its limit; when
 * its turn comes too late to finish before its deadline (the lease less a
 * margin) it is not sent and is released for an immediate retry (its
 * attempt given back).  A request whose message expires (expires_at) is
 * never started after that: if its expiry passes while it waits, or
 * before its turn, it is failed "expired" without being sent.  A running request past its timeout or deadline is
 * abandoned by its transport and retried.
 *
 * Transports register their sockets (netpub_watch) and one timer each
 * (netpub_set_timer); netpub_wait() waits on all of them, the process latch
 * and postmaster death in one WaitEventSet, and calls the transport back.
 * Callbacks from client libraries must not throw: the registration calls
 * here never allocate or raise.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_NETPUB_H
#define TXOUTBOX_NETPUB_H

#include "lib/ilist.h"
#include "storage/latch.h"

#include "publisher.h"

typedef enum NetRequestState
{
	NETREQ_WAITING,
	NETREQ_RUNNING,
	NETREQ_DONE,
	NETREQ_COLLECTED
} NetRequestState;

struct NetTransport;

/*
 * One message on its way.  A transport's own request struct starts with a
 * NetRequest (NetTransport.request_size says how big it is).
 */
typedef struct NetRequest
{
	dlist_node	node;			/* in one of netpub's lists */
	MemoryContext cxt;			/* this and everything it owns */
	const struct NetTransport *transport;
	NetRequestState state;
	PublishItem item;			/* the outcome; item.msg and item.route point
								 * to msg and route below */
	OutboxMessage msg;			/* id and attempt (no payload or row) */
	OutboxRoute route;			/* id, pattern and policy (no config) */
	int			route_limit;	/* most requests of its route running at once */
	bool		sync;			/* dispatch(): its caller waits for it */
	TimestampTz deadline;		/* must be finished by then; 0: none */
	TimestampTz expires_at;		/* not to be started from then on (its
								 * message's expiry); 0: none */
	TimestampTz started_at;		/* when start() sent it */
	TimestampTz timeout_at;		/* running: retried if not done by then (set
								 * by start(), within its budget); 0: the
								 * transport enforces its own timeout */
	int			timeout_ms;		/* the timeout that timeout_at stands for */
} NetRequest;

typedef struct NetTransport
{
	const char *name;
	Size		request_size;	/* sizeof the transport's request struct */

	/*
	 * Most requests of this transport running at once (all routes), or 0
	 * for no limit.
	 */
	int			(*max_running) (void);

	/*
	 * Build the request's wire form from its item, in the current memory
	 * context (the request's).  Returns false, having set req->item's
	 * outcome, when the message cannot be sent.
	 */
	bool		(*prepare) (NetRequest *req, const PublishItem *item);

	/*
	 * Send the request now, finishing within budget_ms (its deadline).
	 * Returns true when it is on its way (netpub_finish will be called for
	 * it later), false when it was finished at once (netpub_finish called).
	 */
	bool		(*start) (NetRequest *req, int budget_ms);

	/* A socket it watches has events (WL_SOCKET_READABLE/WRITEABLE). */
	void		(*on_socket) (pgsocket fd, uint32 events);

	/* Its timer (netpub_set_timer) is due. */
	void		(*on_timer) (void);

	/*
	 * Forget a running request (netpub retries it: its timeout passed, or
	 * dispatch() is ending in an error).  May be NULL when the transport
	 * keeps nothing per running request.
	 */
	void		(*abandon) (NetRequest *req);

	/*
	 * Free what the request holds outside its memory context (a client
	 * library's allocations); called before netpub frees it.  May be NULL.
	 */
	void		(*release) (NetRequest *req);
} NetTransport;

/* For publishers: hand requests over, and account for routes. */
extern void netpub_publish(const NetTransport *transport, PublishItem *items, int n,
						   int (*route_limit) (const OutboxRoute *route));
extern int	netpub_route_load(const NetTransport *transport, int64 route_id);
extern int	netpub_capacity(const NetTransport *transport, const OutboxRoute *route,
							int route_limit);

/* For transports. */
extern void netpub_watch(const NetTransport *transport, pgsocket fd, uint32 events);
extern void netpub_set_timer(const NetTransport *transport, TimestampTz when);
extern void netpub_finish(NetRequest *req, PublishOutcome outcome, int64 retry_after_ms,
						  const char *fmt,...) pg_attribute_printf(4, 5);
extern void netpub_finish_unsent(NetRequest *req, const char *fmt,...) pg_attribute_printf(2, 3);
extern void netpub_finish_expired(NetRequest *req);

/* For the dispatcher. */
#define NETPUB_WOKE_LATCH		0x01	/* the process latch was set */
#define NETPUB_WOKE_DONE		0x02	/* some requests finished */
#define NETPUB_WOKE_TIMEOUT		0x04	/* timeout_ms passed */
#define NETPUB_WOKE_ROOM		0x08	/* a route netpub_capacity() gave no room
										 * has room again: time for a round */
extern int	netpub_wait(long timeout_ms);
extern int	netpub_collect(PublishItem **items);
extern int	netpub_in_flight(void);
extern void netpub_recover_after_error(void);

/* Reconnect backoff of one connection. */
typedef struct NetBackoff
{
	TimestampTz next_try;		/* 0: try now */
	int			delay_ms;		/* the next delay after a failure */
	int			failures;		/* in a row */
} NetBackoff;

extern bool netpub_backoff_ready(const NetBackoff *b);
extern void netpub_backoff_failed(NetBackoff *b);
extern void netpub_backoff_reset(NetBackoff *b);

/* Secrets out of error texts. */
extern char *netpub_redact(const char *text, const char *secret);
extern char *netpub_url_without_password(const char *url);

#endif							/* TXOUTBOX_NETPUB_H */
