/*-------------------------------------------------------------------------
 *
 * netpub.c
 *	  The network publishers' shared machinery (see netpub.h for the model).
 *
 * Requests: each lives in a memory context of its own under netpub_cxt,
 * from publish() until the collect after the one that returned its outcome.
 * Waiting requests are queued per route (RouteLoad), so starting the next
 * one is cheap whatever other routes hold; running and done requests are
 * in one list each.  Every list move happens before anything that may
 * throw, and the request being started is remembered (in_hand), so an
 * ERROR raised while no transaction is open leaves no request in limbo:
 * netpub_recover_after_error() retries it.
 *
 * Waiting: one WaitEventSet holds the latch, postmaster death and every
 * watched socket.  It is rebuilt (lazily, at the next wait) when a socket is
 * added or removed, and modified in place when only its events change.
 * netpub_watch and netpub_set_timer never allocate or raise, since client
 * libraries call them from their callbacks.
 *
 * In a session (dispatch(), inside the caller's transaction) netpub_publish
 * waits until every request it handed over is done, then returns their
 * outcomes; those requests have no deadline (the caller's row locks hold
 * the messages).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "netpub.h"
#include "pg_compat.h"
#include "route_state.h"
#include "settings.h"

#define NETPUB_MAX_SOCKETS		4096
#define NETPUB_MAX_TRANSPORTS	8
#define NETPUB_MIN_BUDGET_MS	1000	/* shortest time a lease may leave a
										 * request; less and it is not sent */
#define NETPUB_LEASE_MARGIN_MS	5000	/* at most; kept to record outcomes */
#define NETPUB_SYNC_POLL_MS		100
#define NETPUB_BACKOFF_MIN_MS	200
#define NETPUB_BACKOFF_MAX_MS	5000

/* Requests of one route of one transport: counts, and its waiting queue. */
typedef struct RouteLoad
{
	const NetTransport *transport;
	int64		route_id;
	int			waiting;
	int			running;
	int			wake_below;		/* netpub_capacity refused it: netpub_wait
								 * says so once its load is below this (half
								 * its limit); 0: not refused */
	dlist_head	queue;			/* waiting requests, oldest first */
} RouteLoad;

typedef struct WatchedSocket
{
	pgsocket	fd;
	uint32		events;
	const NetTransport *transport;
	int			pos;			/* in wait_set, when not wait_set_stale */
} WatchedSocket;

typedef struct TransportState
{
	const NetTransport *transport;
	TimestampTz timer;			/* 0: none */
	int			running;
} TransportState;

static MemoryContext netpub_cxt = NULL;

static RouteLoad *route_loads = NULL;
static int	nroute_loads = 0;
static int	max_route_loads = 0;

static dlist_head running = DLIST_STATIC_INIT(running);
static dlist_head done = DLIST_STATIC_INIT(done);
static dlist_head collected = DLIST_STATIC_INIT(collected);
static int	nwaiting = 0;
static int	nrunning = 0;
static int	ndone = 0;
static uint64 finished_count = 0;	/* requests finished since start */
static bool room_again = false; /* a route refused capacity has room now */
static TimestampTz next_expiry = 0; /* earliest timeout_at/deadline of a
									 * running request, or 0 */
static TimestampTz next_wait_expiry = 0;	/* earliest expires_at of a waiting
											 * request, or 0 (it may be gone) */

static TransportState transports[NETPUB_MAX_TRANSPORTS];
static int	ntransports = 0;

static WatchedSocket sockets[NETPUB_MAX_SOCKETS];
static int	nsockets = 0;
static WaitEventSet *wait_set = NULL;
static bool wait_set_stale = true;

static NetRequest *in_hand = NULL;	/* being started: see recover */

static void run_timers(TimestampTz now);

/* ---- bookkeeping --------------------------------------------------------- */

/* The state of transport t (registered on first use; never fails). */
static TransportState *
transport_state(const NetTransport *t)
{
	int			i;

	for (i = 0; i < ntransports; i++)
		if (transports[i].transport == t)
			return &transports[i];
	if (ntransports == NETPUB_MAX_TRANSPORTS)
		elog(PANIC, "txoutbox: too many network transports");
	transports[ntransports].transport = t;
	transports[ntransports].timer = 0;
	transports[ntransports].running = 0;
	return &transports[ntransports++];
}

/* The RouteLoad of (t, route_id); created when create, else NULL. */
static RouteLoad *
route_load(const NetTransport *t, int64 route_id, bool create)
{
	int			i;

	for (i = 0; i < nroute_loads; i++)
		if (route_loads[i].transport == t && route_loads[i].route_id == route_id)
			return &route_loads[i];
	if (!create)
		return NULL;
	if (nroute_loads == max_route_loads)
	{
		int			newmax = Max(16, max_route_loads * 2);
		RouteLoad  *n = MemoryContextAllocZero(netpub_cxt, sizeof(RouteLoad) * newmax);

		/* queues hold pointers to their heads: move each one's nodes over */
		for (i = 0; i < nroute_loads; i++)
		{
			n[i] = route_loads[i];
			dlist_init(&n[i].queue);
			while (!dlist_is_empty(&route_loads[i].queue))
				dlist_push_tail(&n[i].queue, dlist_pop_head_node(&route_loads[i].queue));
		}
		if (route_loads)
			pfree(route_loads);
		route_loads = n;
		max_route_loads = newmax;
	}
	route_loads[nroute_loads].transport = t;
	route_loads[nroute_loads].route_id = route_id;
	route_loads[nroute_loads].waiting = 0;
	route_loads[nroute_loads].running = 0;
	route_loads[nroute_loads].wake_below = 0;
	dlist_init(&route_loads[nroute_loads].queue);
	return &route_loads[nroute_loads++];
}

/* Set up netpub's memory once per process. */
static void
netpub_init(void)
{
	if (netpub_cxt != NULL)
		return;
	netpub_cxt = AllocSetContextCreate(TopMemoryContext, "txoutbox network requests",
									   ALLOCSET_DEFAULT_SIZES);
}

/* Take req out of whatever list it is in, keeping the counts right. */
static void
unlink_request(NetRequest *req)
{
	RouteLoad  *rl = route_load(req->transport, req->route.id, false);

	switch (req->state)
	{
		case NETREQ_WAITING:
			dlist_delete(&req->node);
			nwaiting--;
			if (rl)
				rl->waiting--;
			break;
		case NETREQ_RUNNING:
			dlist_delete(&req->node);
			nrunning--;
			transport_state(req->transport)->running--;
			if (rl)
				rl->running--;
			break;
		case NETREQ_DONE:
			dlist_delete(&req->node);
			ndone--;
			break;
		case NETREQ_COLLECTED:
			dlist_delete(&req->node);
			break;
	}
	/* a route netpub_capacity refused has room now: netpub_wait says so */
	if (rl && rl->wake_below > 0 && rl->waiting + rl->running < rl->wake_below)
	{
		rl->wake_below = 0;
		room_again = true;
	}
}

/* Free a request that is in no list. */
static void
free_request(NetRequest *req)
{
	if (req->transport->release)
		req->transport->release(req);
	MemoryContextDelete(req->cxt);
}

/* Record req's outcome (no error text yet) and move it to done. */
static void
finish_request(NetRequest *req, PublishOutcome outcome, int64 retry_after_ms, bool not_sent,
			   bool held_back, bool expired)
{
	unlink_request(req);
	req->state = NETREQ_DONE;
	dlist_push_tail(&done, &req->node);
	ndone++;
	finished_count++;
	if (in_hand == req)
		in_hand = NULL;

	req->item.outcome = outcome;
	req->item.retry_after_ms = retry_after_ms;
	req->item.not_sent = not_sent;
	req->item.held_back = held_back;
	req->item.expired = expired;
	req->item.error = NULL;
	/* every dispatcher holds the route from now on, not from our next round */
	if (outcome == PUBLISH_RETRY)
		route_state_hold(&req->route, retry_after_ms);
}

/* Record req's outcome (the error formatted in req's memory) and move it to done. */
static void finish_va(NetRequest *req, PublishOutcome outcome, int64 retry_after_ms, bool not_sent,
					  bool held_back, const char *fmt, va_list args) pg_attribute_printf(6, 0);

static void
finish_va(NetRequest *req, PublishOutcome outcome, int64 retry_after_ms, bool not_sent,
		  bool held_back, const char *fmt, va_list args)
{
	finish_request(req, outcome, retry_after_ms, not_sent, held_back, false);
	if (fmt != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(req->cxt);
		StringInfoData buf;

		initStringInfo(&buf);
		for (;;)
		{
			va_list		copy;
			int			needed;

			va_copy(copy, args);
			needed = appendStringInfoVA(&buf, fmt, copy);
			va_end(copy);
			if (needed == 0)
				break;
			enlargeStringInfo(&buf, needed);
		}
		req->item.error = buf.data;
		MemoryContextSwitchTo(old);
	}
}

/*
 * A transport finished req: outcome, Retry-After (< 0: none) and, for RETRY
 * and FAILED, the error (which must name no secret).
 */
void
netpub_finish(NetRequest *req, PublishOutcome outcome, int64 retry_after_ms,
			  const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	finish_va(req, outcome, retry_after_ms, false, false, fmt, args);
	va_end(args);
}

/*
 * A transport could not send req (the broker or endpoint is down or
 * unreachable: nothing reached it): retry at once, giving back the attempt
 * its lease counted.  The route's breaker counts it as an endpoint failure.
 */
void
netpub_finish_unsent(NetRequest *req, const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	finish_va(req, PUBLISH_RETRY, 0, true, false, fmt, args);
	va_end(args);
}

/*
 * netpub did not send req, by its own choice (its lease would end first, its
 * route's breaker opened): like netpub_finish_unsent, but it says nothing of
 * the endpoint.
 */
static void finish_held_back(NetRequest *req, const char *fmt,...) pg_attribute_printf(2, 3);

static void
finish_held_back(NetRequest *req, const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	finish_va(req, PUBLISH_RETRY, 0, true, true, fmt, args);
	va_end(args);
}

/*
 * req's message expired before it was sent: failed "expired" (its error,
 * if any, is its last attempt's, already recorded).
 */
void
netpub_finish_expired(NetRequest *req)
{
	finish_request(req, PUBLISH_FAILED, -1, false, false, true);
}

/* ---- starting requests --------------------------------------------------- */

/*
 * Start req (waiting, its turn): when its deadline leaves too little time,
 * it is not sent; otherwise the transport sends it.
 */
static void
start_request(NetRequest *req, TimestampTz now)
{
	RouteLoad  *rl = route_load(req->transport, req->route.id, true);
	TransportState *ts = transport_state(req->transport);
	int			budget_ms = INT_MAX;
	int			ahead = nrunning + nwaiting - 1;
	const char *blocked;

	if (req->expires_at != 0 && now >= req->expires_at)
	{
		netpub_finish_expired(req);
		return;
	}
	blocked = route_state_blocked(&req->route);
	if (blocked != NULL)
	{
		finish_held_back(req, "not sent: %s", blocked);
		return;
	}
	if (req->deadline != 0)
	{
		long		left = TimestampDifferenceMilliseconds(now, req->deadline);

		if (left < NETPUB_MIN_BUDGET_MS)
		{
			finish_held_back(req, "not sent: the claim's lease (txoutbox.lock_timeout) would end before "
								 "the %s request could; %d requests were ahead of it",
								 req->transport->name, ahead);
			return;
		}
		budget_ms = (int) Min(left, INT_MAX);
	}

	/* running before the transport sees it: whatever it does, netpub knows */
	dlist_delete(&req->node);
	nwaiting--;
	rl->waiting--;
	req->state = NETREQ_RUNNING;
	dlist_push_tail(&running, &req->node);
	nrunning++;
	rl->running++;
	ts->running++;
	req->started_at = now;
	req->timeout_at = 0;

	in_hand = req;
	if (req->transport->start(req, budget_ms) && req->timeout_at != 0 &&
		(next_expiry == 0 || req->timeout_at < next_expiry))
		next_expiry = req->timeout_at;
	in_hand = NULL;
}

/* Start what the limits allow, route by route, oldest first within one. */
static void
drive(void)
{
	TimestampTz now;
	int			i;

	if (nwaiting == 0)
		return;
	now = GetCurrentTimestamp();
	for (i = 0; i < nroute_loads; i++)
	{
		RouteLoad  *rl = &route_loads[i];
		TransportState *ts = transport_state(rl->transport);
		int			max_running = rl->transport->max_running ? rl->transport->max_running() : 0;

		while (!dlist_is_empty(&rl->queue))
		{
			NetRequest *req = dlist_head_element(NetRequest, node, &rl->queue);

			if (max_running > 0 && ts->running >= max_running)
				break;
			if (req->route_limit > 0 && rl->running >= req->route_limit)
				break;
			start_request(req, now);
		}
	}
}

/*
 * Retry the running requests whose timeout passed (the transport forgets
 * them first).  A transport sets timeout_at within the budget start() was
 * given, so this also keeps requests within their leases.
 */
static void
expire_requests(TimestampTz now)
{
	dlist_mutable_iter it;

	if (next_expiry == 0 || now < next_expiry)
		return;
	next_expiry = 0;
	dlist_foreach_modify(it, &running)
	{
		NetRequest *req = dlist_container(NetRequest, node, it.cur);

		if (req->timeout_at == 0)
			continue;
		if (now >= req->timeout_at)
		{
			if (req->transport->abandon)
				req->transport->abandon(req);
			netpub_finish(req, PUBLISH_RETRY, -1,
						  "timed out after %d ms waiting for the %s confirmation",
						  req->timeout_ms, req->transport->name);
			continue;
		}
		if (next_expiry == 0 || req->timeout_at < next_expiry)
			next_expiry = req->timeout_at;
	}
}

/*
 * Fail "expired" the waiting requests whose messages expired (see
 * netpub.h), so that none waits for a turn it must not take.
 */
static void
expire_waiting(TimestampTz now)
{
	if (next_wait_expiry == 0 || now < next_wait_expiry)
		return;
	next_wait_expiry = 0;
	for (int i = 0; i < nroute_loads; i++)
	{
		dlist_mutable_iter it;

		dlist_foreach_modify(it, &route_loads[i].queue)
		{
			NetRequest *req = dlist_container(NetRequest, node, it.cur);

			if (req->expires_at == 0)
				continue;
			if (now >= req->expires_at)
				netpub_finish_expired(req);
			else if (next_wait_expiry == 0 || req->expires_at < next_wait_expiry)
				next_wait_expiry = req->expires_at;
		}
	}
}

/* ---- for publishers ------------------------------------------------------ */

/* A new request for item, built by its transport; NULL (outcome set) when it cannot be sent. */
static NetRequest *
new_request(const NetTransport *t, PublishItem *item, int route_limit, bool sync)
{
	MemoryContext cxt = AllocSetContextCreate(netpub_cxt, "txoutbox network request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	NetRequest *req = palloc0(Max(t->request_size, sizeof(NetRequest)));
	TimestampTz deadline = 0;

	req->cxt = cxt;
	req->transport = t;
	req->state = NETREQ_WAITING;
	req->sync = sync;
	req->route_limit = route_limit;
	req->item = *item;
	req->item.msg = &req->msg;
	req->item.route = &req->route;
	req->item.outcome = PUBLISH_IN_FLIGHT;
	req->item.error = NULL;
	req->item.retry_after_ms = -1;
	req->item.not_sent = false;
	req->item.held_back = false;
	req->item.expired = false;
	memcpy(&req->msg.id, &item->msg->id, sizeof(pg_uuid_t));
	memcpy(req->msg.id_str, item->msg->id_str, sizeof(req->msg.id_str));
	req->msg.attempt_count = item->msg->attempt_count;
	req->msg.max_attempts = item->msg->max_attempts;
	req->msg.lease_until = item->msg->lease_until;
	req->msg.expires_at = item->msg->expires_at;
	req->expires_at = item->msg->expires_at;
	req->route.id = item->route->id;
	req->route.pattern = pstrdup(item->route->pattern);
	req->route.policy = item->route->policy;
	req->route.publisher = item->route->publisher;

	if (!sync)
	{
		int64		lease = txoutbox_lock_timeout_ms;

		deadline = TimestampTzPlusMilliseconds(item->msg->lease_until,
											   -Min(lease / 10, NETPUB_LEASE_MARGIN_MS));
	}
	req->deadline = deadline;

	if (!t->prepare(req, item))
	{
		PublishItem outcome = req->item;

		MemoryContextSwitchTo(old);
		item->outcome = outcome.outcome;
		item->error = outcome.error ? pstrdup(outcome.error) : NULL;
		item->retry_after_ms = outcome.retry_after_ms;
		item->not_sent = outcome.not_sent;
		item->expired = outcome.expired;
		MemoryContextDelete(cxt);
		return NULL;
	}
	MemoryContextSwitchTo(old);
	return req;
}

/* Queue req on its route. */
static void
enqueue_request(NetRequest *req)
{
	RouteLoad  *rl = route_load(req->transport, req->route.id, true);

	(void) transport_state(req->transport);
	dlist_push_tail(&rl->queue, &req->node);
	rl->waiting++;
	nwaiting++;
	if (req->expires_at != 0 && (next_wait_expiry == 0 || req->expires_at < next_wait_expiry))
		next_wait_expiry = req->expires_at;
}

/* Drop the requests a session was waiting for (it is ending in an ERROR). */
static void
drop_sync_requests(void)
{
	dlist_head *lists[] = {&running, &done};
	dlist_mutable_iter it;
	int			i;

	for (i = 0; i < nroute_loads; i++)
		dlist_foreach_modify(it, &route_loads[i].queue)
		{
			NetRequest *req = dlist_container(NetRequest, node, it.cur);

			if (req->sync)
			{
				unlink_request(req);
				free_request(req);
			}
		}
	for (i = 0; i < lengthof(lists); i++)
		dlist_foreach_modify(it, lists[i])
		{
			NetRequest *req = dlist_container(NetRequest, node, it.cur);

			if (req->sync)
			{
				if (req->state == NETREQ_RUNNING && req->transport->abandon)
					req->transport->abandon(req);
				unlink_request(req);
				free_request(req);
			}
		}
}

/*
 * Hand items[0..n-1] (all of one network publisher) to transport t.
 * route_limit(route): most requests of the route running at once (0: no
 * limit of its own).  In the worker (no transaction open) the items are
 * left PUBLISH_IN_FLIGHT and their outcomes come from netpub_collect(), in
 * this round or a later one.  In a session's transaction (dispatch()) every
 * request is finished before returning.  Only an interrupt or running out
 * of memory throws.
 */
void
netpub_publish(const NetTransport *t, PublishItem *items, int n,
			   int (*route_limit) (const OutboxRoute *route))
{
	bool		sync = IsTransactionState();
	NetRequest **reqs;
	int			i;

	if (n == 0)
		return;
	netpub_init();
	reqs = palloc0(sizeof(NetRequest *) * n);
	for (i = 0; i < n; i++)
	{
		int			limit = route_limit ? route_limit(items[i].route) : 0;

		reqs[i] = new_request(t, &items[i], limit, sync);
		if (reqs[i] == NULL)
			continue;			/* its outcome is set */
		enqueue_request(reqs[i]);
		items[i].outcome = PUBLISH_IN_FLIGHT;
		items[i].error = NULL;
	}

	if (!sync)
	{
		/* start what may start, and let the transports begin at once */
		drive();
		run_timers(GetCurrentTimestamp());
		pfree(reqs);
		return;
	}

	PG_TRY();
	{
		for (;;)
		{
			bool		all_done = true;

			for (i = 0; i < n && all_done; i++)
				if (reqs[i] && reqs[i]->state != NETREQ_DONE)
					all_done = false;
			if (all_done)
				break;
			if (netpub_wait(NETPUB_SYNC_POLL_MS) & NETPUB_WOKE_LATCH)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
		}
	}
	PG_CATCH();
	{
		drop_sync_requests();
		PG_RE_THROW();
	}
	PG_END_TRY();

	for (i = 0; i < n; i++)
	{
		NetRequest *req = reqs[i];

		if (req == NULL)
			continue;
		items[i].outcome = req->item.outcome;
		items[i].error = req->item.error ? pstrdup(req->item.error) : NULL;
		items[i].retry_after_ms = req->item.retry_after_ms;
		items[i].not_sent = req->item.not_sent;
		items[i].held_back = req->item.held_back;
		items[i].expired = req->item.expired;
		unlink_request(req);
		free_request(req);
	}
	pfree(reqs);
}

/* Requests of route_id waiting or running in transport t. */
int
netpub_route_load(const NetTransport *t, int64 route_id)
{
	RouteLoad  *rl = route_load(t, route_id, false);

	return rl ? rl->waiting + rl->running : 0;
}

/*
 * How many more requests route may take now, for a route that may have
 * route_limit running at once: none while it has that many waiting or
 * running (a slow route is not claimed from), else up to 32 times that
 * many in all (one claim's worth: cheaper than many small rounds).  Once a
 * route refused here is down to half its limit, netpub_wait returns
 * NETPUB_WOKE_ROOM, so the dispatcher claims for it then rather than at its
 * next timed round.
 */
int
netpub_capacity(const NetTransport *t, const OutboxRoute *route, int route_limit)
{
	RouteLoad  *rl = route_load(t, route->id, false);
	int			have = rl ? rl->waiting + rl->running : 0;
	int64		most = (int64) Max(route_limit, 1) * 32;

	if (have >= Max(route_limit, 1))
	{
		/* half its limit, so that a full route is not a round per request */
		rl->wake_below = Max((route_limit + 1) / 2, 1);
		return 0;
	}
	return (int) Min(most - have, INT_MAX);
}

/* ---- for transports ------------------------------------------------------ */

/*
 * Watch fd for events (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE) on behalf
 * of transport t; events 0 stops watching it.  Never allocates or throws
 * (client libraries call this from their callbacks).
 */
void
netpub_watch(const NetTransport *t, pgsocket fd, uint32 events)
{
	int			i;

	for (i = 0; i < nsockets; i++)
		if (sockets[i].fd == fd)
			break;
	if (events == 0)
	{
		if (i < nsockets)
		{
			sockets[i] = sockets[--nsockets];
			wait_set_stale = true;
		}
		return;
	}
	if (i == nsockets)
	{
		if (nsockets == NETPUB_MAX_SOCKETS)
			return;				/* cannot happen: concurrency is capped below */
		sockets[i].fd = fd;
		sockets[i].events = 0;
		sockets[i].transport = t;
		nsockets++;
		wait_set_stale = true;
	}
	if (sockets[i].events != events)
	{
		sockets[i].events = events;
		sockets[i].transport = t;
		if (!wait_set_stale)
			ModifyWaitEvent(wait_set, sockets[i].pos, events, NULL);
	}
}

/* Call t's on_timer at when (0: no timer).  Never allocates or throws. */
void
netpub_set_timer(const NetTransport *t, TimestampTz when)
{
	int			i;

	for (i = 0; i < ntransports; i++)
		if (transports[i].transport == t)
		{
			transports[i].timer = when;
			return;
		}
	if (ntransports < NETPUB_MAX_TRANSPORTS)
	{
		transports[ntransports].transport = t;
		transports[ntransports].running = 0;
		transports[ntransports].timer = when;
		ntransports++;
	}
}

/* ---- for the dispatcher -------------------------------------------------- */

/* (Re)build the wait set: latch, postmaster death, every watched socket. */
static void
build_wait_set(void)
{
	int			i;

	if (wait_set != NULL)
		FreeWaitEventSet(wait_set);
	wait_set = compat_create_wait_event_set(nsockets + 2);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < nsockets; i++)
		sockets[i].pos = AddWaitEventToSet(wait_set, sockets[i].events, sockets[i].fd,
										   NULL, (void *) (intptr_t) sockets[i].fd);
	wait_set_stale = false;
}

/* Call the transports whose timers are due. */
static void
run_timers(TimestampTz now)
{
	int			i;

	for (i = 0; i < ntransports; i++)
	{
		TransportState *ts = &transports[i];

		if (ts->timer != 0 && now >= ts->timer)
		{
			ts->timer = 0;
			if (ts->transport->on_timer)
				ts->transport->on_timer();
		}
	}
}

/* The earliest timer or expiry, or 0. */
static TimestampTz
next_wakeup(void)
{
	TimestampTz next = next_expiry;
	int			i;

	if (next_wait_expiry != 0 && (next == 0 || next_wait_expiry < next))
		next = next_wait_expiry;
	for (i = 0; i < ntransports; i++)
		if (transports[i].timer != 0 && (next == 0 || transports[i].timer < next))
			next = transports[i].timer;
	return next;
}

/* NETPUB_WOKE_ROOM once after a refused route got room again (see netpub_capacity). */
static int
room_bit(void)
{
	if (!room_again)
		return 0;
	room_again = false;
	return NETPUB_WOKE_ROOM;
}

/*
 * Wait up to timeout_ms for the latch, a watched socket or a timer, and
 * drive the transports meanwhile (start what may start, hand them their
 * socket events and timers, retry what expired).  Returns as soon as the
 * latch is set, a request finished, or a route that netpub_capacity
 * refused has room again (NETPUB_WOKE_* bits).  Postmaster death ends the
 * process.  The latch is not reset here.
 */
int
netpub_wait(long timeout_ms)
{
	TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	uint64		finished_before = finished_count;
	WaitEvent	events[64];

	for (;;)
	{
		TimestampTz now;
		TimestampTz next;
		long		wait_ms;
		int			woke = 0;
		int			n,
					i;

		drive();
		now = GetCurrentTimestamp();
		run_timers(now);
		expire_requests(now);
		expire_waiting(now);
		drive();
		if (finished_count != finished_before || room_again)
		{
			/*
			 * The latch may have been set meanwhile (a commit, or a transport
			 * that has room again): say so, or the caller, which resets it
			 * before its next round, would lose that wake-up.
			 */
			return (finished_count != finished_before ? NETPUB_WOKE_DONE : 0) | room_bit() |
				(MyLatch->is_set ? NETPUB_WOKE_LATCH : 0);
		}

		now = GetCurrentTimestamp();
		if (now >= until)
			return NETPUB_WOKE_TIMEOUT | room_bit();
		wait_ms = TimestampDifferenceMilliseconds(now, until);
		next = next_wakeup();
		if (next != 0)
			wait_ms = Min(wait_ms, TimestampDifferenceMilliseconds(now, next) + 1);

		if (wait_set == NULL || wait_set_stale)
			build_wait_set();
		n = WaitEventSetWait(wait_set, wait_ms, events, lengthof(events), PG_WAIT_EXTENSION);
		for (i = 0; i < n; i++)
		{
			if (events[i].events & WL_LATCH_SET)
				woke |= NETPUB_WOKE_LATCH;
			else if (events[i].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			{
				pgsocket	fd = (pgsocket) (intptr_t) events[i].user_data;
				int			j;

				for (j = 0; j < nsockets; j++)
					if (sockets[j].fd == fd)
					{
						sockets[j].transport->on_socket(fd, events[i].events &
														(WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE));
						break;
					}
			}
		}
		if (woke)
		{
			drive();
			return woke | (finished_count != finished_before ? NETPUB_WOKE_DONE : 0) | room_bit();
		}
	}
}

/*
 * The items whose requests finished since the last call, in an array in
 * the caller's memory context; their msg and route stay valid until the
 * next call.
 */
int
netpub_collect(PublishItem **items)
{
	dlist_mutable_iter it;
	int			n = 0;

	*items = NULL;
	dlist_foreach_modify(it, &collected)
	{
		NetRequest *req = dlist_container(NetRequest, node, it.cur);

		dlist_delete(&req->node);
		free_request(req);
	}
	dlist_init(&collected);
	if (ndone == 0)
		return 0;
	*items = palloc(sizeof(PublishItem) * ndone);
	while (!dlist_is_empty(&done))
	{
		NetRequest *req = dlist_container(NetRequest, node, dlist_pop_head_node(&done));

		ndone--;
		(*items)[n++] = req->item;
		req->state = NETREQ_COLLECTED;
		dlist_push_tail(&collected, &req->node);
	}
	return n;
}

/* Requests handed over and not yet collected. */
int
netpub_in_flight(void)
{
	return nwaiting + nrunning + ndone;
}

/*
 * After an ERROR escaped while no transaction was open: the request being
 * started (if any) is retried, so that no concurrency slot stays taken.
 */
void
netpub_recover_after_error(void)
{
	NetRequest *req = in_hand;

	in_hand = NULL;
	if (req == NULL || req->state != NETREQ_RUNNING)
		return;
	if (req->transport->abandon)
		req->transport->abandon(req);
	netpub_finish(req, PUBLISH_RETRY, -1, "internal error while sending the %s request",
				  req->transport->name);
}

/* ---- reconnect backoff --------------------------------------------------- */

/* May the connection be tried now? */
bool
netpub_backoff_ready(const NetBackoff *b)
{
	return b->next_try == 0 || GetCurrentTimestamp() >= b->next_try;
}

/* A connection attempt (or the connection) failed: wait longer next time. */
void
netpub_backoff_failed(NetBackoff *b)
{
	b->failures++;
	b->delay_ms = b->delay_ms <= 0 ? NETPUB_BACKOFF_MIN_MS :
		Min(b->delay_ms * 2, NETPUB_BACKOFF_MAX_MS);
	b->next_try = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), b->delay_ms);
}

/* The connection works. */
void
netpub_backoff_reset(NetBackoff *b)
{
	b->next_try = 0;
	b->delay_ms = 0;
	b->failures = 0;
}

/* ---- redaction ----------------------------------------------------------- */

/* text with every occurrence of secret replaced by "***" (a new string). */
char *
netpub_redact(const char *text, const char *secret)
{
	StringInfoData buf;
	size_t		slen = secret ? strlen(secret) : 0;
	const char *p = text;
	const char *hit;

	if (slen == 0)
		return pstrdup(text);
	initStringInfo(&buf);
	while ((hit = strstr(p, secret)) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, "***");
		p = hit + slen;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * url with the password of its user info (scheme://user:password@host...)
 * replaced by "***"; a url without one is returned as is (a new string).
 */
char *
netpub_url_without_password(const char *url)
{
	const char *start = strstr(url, "://");
	const char *end;
	const char *at = NULL;
	const char *colon = NULL;
	const char *p;

	if (start == NULL)
		return pstrdup(url);
	start += 3;
	end = start + strcspn(start, "/?#");
	for (p = start; p < end; p++)
		if (*p == '@')
			at = p;
	if (at == NULL)
		return pstrdup(url);
	colon = memchr(start, ':', at - start);
	if (colon == NULL)
		return pstrdup(url);
	return psprintf("%.*s***%s", (int) (colon + 1 - url), url, at);
}
