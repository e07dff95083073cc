/*-------------------------------------------------------------------------
 *
 * route_state.c
 *	  Per-route state shared by every dispatcher (route_state.h): the
 *	  circuit breaker of network routes, the token bucket of a route's
 *	  "rate_limit", the pause an endpoint asks for with Retry-After, and
 *	  the rate a route sends at.
 *
 * Circuit breaker (routes of network publishers; threshold, cool-down and
 * its cap are settings with route overrides): closed, it counts
 * consecutive endpoint failures (a RETRY outcome: timeouts, connection
 * errors, 5xx, 429, a broker down or unreachable; not a 4xx for one
 * message, nor a message txoutbox held back itself).  At the threshold it opens: the route gets nothing
 * (its messages stay untouched in the table: no attempts counted) until
 * the cool-down passes; then it is half-open and one message goes as a
 * probe.  An answer closes it (its backlog flows at full speed again); a
 * failure re-opens it with the cool-down doubled, up to its cap.
 *
 * Rate limit: a token bucket of "rate_limit" tokens a second, holding at
 * most one second's worth; every message a dispatcher takes for the route
 * uses one.  Messages wait in the table for tokens, so waiting counts no
 * attempts.  Retry-After (a 429 or 503 that says when to come back) holds
 * the whole route until then.
 *
 * The state lives in a shared hash keyed by (database, route id), under
 * its own LWLock; it is lost at a restart (the breaker starts closed, the
 * bucket full).  The operator's pause is txoutbox.routes.paused_at and
 * survives restarts.  A route whose entry cannot be made (more than
 * ROUTE_STATE_MAX routes) runs unlimited and unguarded, logged once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "route_state.h"
#include "settings.h"
#include "shmem.h"

typedef struct RouteStateKey
{
	Oid			dboid;
	int64		route_id;
} RouteStateKey;

typedef struct RouteState
{
	RouteStateKey key;
	BreakerState breaker;
	int			failures;		/* consecutive endpoint failures */
	TimestampTz since;			/* when the breaker entered its state */
	TimestampTz next_probe;		/* open: when a probe may go */
	int			cooldown_ms;	/* the cool-down after the last opening */
	TimestampTz probe_until;	/* half-open: a probe is out until then */
	TimestampTz hold_until;		/* Retry-After: nothing before then */
	char		last_error[256];
	double		tokens;			/* rate limit's bucket */
	TimestampTz refilled_at;
	TimestampTz window_start;	/* messages taken in the current second */
	int			window_taken;
	double		rate;			/* messages taken per second, last second */
} RouteState;

static HTAB *route_states = NULL;
static LWLock *route_state_lock = NULL;
static bool full_logged = false;

/* Shared memory needed (asked for by shmem.c). */
Size
route_state_shmem_size(void)
{
	return hash_estimate_size(ROUTE_STATE_MAX, sizeof(RouteState));
}

/* Create or attach to the hash; called by shmem.c under AddinShmemInitLock. */
void
route_state_shmem_init(void)
{
	HASHCTL		info;

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(RouteStateKey);
	info.entrysize = sizeof(RouteState);
	route_states = ShmemInitHash("txoutbox route state", ROUTE_STATE_MAX, ROUTE_STATE_MAX,
								 &info, HASH_ELEM | HASH_BLOBS);
	route_state_lock = &(GetNamedLWLockTranche("txoutbox"))[1].lock;
}

/* The breaker's threshold for route (0: no breaker). */
static int
breaker_failures(const OutboxRoute *route)
{
	if (route->publisher == NULL || route->publisher->kind != PUBLISHER_NETWORK)
		return 0;
	return route->policy.breaker_failures >= 0 ? route->policy.breaker_failures :
		txoutbox_breaker_failures;
}

static int
cooldown_base_ms(const OutboxRoute *route)
{
	return route->policy.breaker_cooldown_ms > 0 ? route->policy.breaker_cooldown_ms :
		txoutbox_breaker_cooldown_ms;
}

static int
cooldown_max_ms(const OutboxRoute *route)
{
	return Max(route->policy.breaker_max_cooldown_ms > 0 ? route->policy.breaker_max_cooldown_ms :
			   txoutbox_breaker_max_cooldown_ms, cooldown_base_ms(route));
}

/*
 * route's entry, made when missing (NULL when the hash is full).  Caller
 * holds route_state_lock exclusively.
 */
static RouteState *
entry_for(const OutboxRoute *route)
{
	RouteStateKey key;
	RouteState *e;
	bool		found;

	if (route_states == NULL)
		return NULL;
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.route_id = route->id;
	e = hash_search(route_states, &key, HASH_ENTER_NULL, &found);
	if (e == NULL)
	{
		if (!full_logged)
			ereport(LOG,
					(errmsg("txoutbox: more than %d routes: route %lld runs without a circuit breaker or rate limit",
							ROUTE_STATE_MAX, (long long) route->id)));
		full_logged = true;
		return NULL;
	}
	if (!found)
	{
		memset(((char *) e) + sizeof(RouteStateKey), 0, sizeof(RouteState) - sizeof(RouteStateKey));
		e->breaker = BREAKER_CLOSED;
		e->since = GetCurrentTimestamp();
		e->tokens = route->policy.rate_limit;
		e->refilled_at = e->since;
		e->window_start = e->since;
	}
	return e;
}

/* Refill e's bucket for route's rate up to now (one second's worth at most). */
static void
refill(RouteState *e, const OutboxRoute *route, TimestampTz now)
{
	double		rate = route->policy.rate_limit;

	if (rate <= 0)
		return;
	e->tokens = Min(rate, e->tokens + rate * (double) (now - e->refilled_at) / USECS_PER_SEC);
	e->refilled_at = now;
}

/*
 * How many messages route may take now (INT_MAX: no limit), without taking
 * them; when none, *next_change (if not NULL) is when that may change (0:
 * when something else happens: a resume, an answer).
 */
int
route_state_room(const OutboxRoute *route, TimestampTz *next_change)
{
	TimestampTz now = GetCurrentTimestamp();
	RouteState *e;
	int			room = INT_MAX;

	if (next_change)
		*next_change = 0;
	if (route->paused)
		return 0;
	if (breaker_failures(route) == 0 && route->policy.rate_limit <= 0)
	{
		/* nothing to limit but an endpoint's Retry-After: a shared read */
		LWLockAcquire(route_state_lock, LW_SHARED);
		if (route_states)
		{
			RouteStateKey key;

			memset(&key, 0, sizeof(key));
			key.dboid = MyDatabaseId;
			key.route_id = route->id;
			e = hash_search(route_states, &key, HASH_FIND, NULL);
			if (e && e->hold_until > now)
			{
				room = 0;
				if (next_change)
					*next_change = e->hold_until;
			}
		}
		LWLockRelease(route_state_lock);
		return room;
	}

	LWLockAcquire(route_state_lock, LW_EXCLUSIVE);
	e = entry_for(route);
	if (e != NULL)
	{
		if (e->hold_until > now)
		{
			room = 0;
			if (next_change)
				*next_change = e->hold_until;
		}
		else if (e->breaker == BREAKER_OPEN && now < e->next_probe)
		{
			room = 0;
			if (next_change)
				*next_change = e->next_probe;
		}
		else if ((e->breaker == BREAKER_HALF_OPEN && e->probe_until > now))
		{
			room = 0;
			if (next_change)
				*next_change = e->probe_until;
		}
		else if (e->breaker != BREAKER_CLOSED)
			room = 1;			/* a probe may go */
		if (room > 0 && route->policy.rate_limit > 0)
		{
			refill(e, route, now);
			room = Min(room, (int) floor(e->tokens));
			if (room == 0 && next_change)
				*next_change = TimestampTzPlusMilliseconds(now,
														   (int64) ceil((1.0 - e->tokens) * 1000.0 / route->policy.rate_limit));
		}
	}
	LWLockRelease(route_state_lock);
	return room;
}

/*
 * Take up to n messages for route now: returns how many may go (each uses
 * a token; a probe of a half-open breaker is taken by one dispatcher only).
 */
int
route_state_take(const OutboxRoute *route, int n)
{
	TimestampTz now = GetCurrentTimestamp();
	RouteState *e;
	int			allowed = n;

	if (route->paused)
		return 0;
	if (n <= 0)
		return 0;
	LWLockAcquire(route_state_lock, LW_EXCLUSIVE);
	e = entry_for(route);
	if (e != NULL)
	{
		if (e->hold_until > now)
			allowed = 0;
		else if (e->breaker == BREAKER_OPEN)
		{
			if (now >= e->next_probe)
			{
				e->breaker = BREAKER_HALF_OPEN;
				e->since = now;
				e->probe_until = TimestampTzPlusMilliseconds(now, txoutbox_lock_timeout_ms);
				allowed = 1;
			}
			else
				allowed = 0;
		}
		else if (e->breaker == BREAKER_HALF_OPEN)
		{
			if (e->probe_until > now)
				allowed = 0;
			else
			{
				e->probe_until = TimestampTzPlusMilliseconds(now, txoutbox_lock_timeout_ms);
				allowed = 1;
			}
		}
		if (allowed > 0 && route->policy.rate_limit > 0)
		{
			refill(e, route, now);
			allowed = Min(allowed, (int) floor(e->tokens));
			e->tokens -= allowed;
		}
		if (now - e->window_start >= USECS_PER_SEC)
		{
			e->rate = e->window_taken * (double) USECS_PER_SEC / (now - e->window_start);
			if (now - e->window_start >= 2 * USECS_PER_SEC)
				e->rate = 0;	/* nothing for a whole second */
			e->window_start = now;
			e->window_taken = 0;
		}
		e->window_taken += allowed;
	}
	LWLockRelease(route_state_lock);
	return allowed;
}

/*
 * Why a message of route that was handed over but not sent yet must not be
 * sent now (its breaker opened, or its endpoint said to come back later),
 * or NULL.  A half-open breaker lets its probe go.
 */
const char *
route_state_blocked(const OutboxRoute *route)
{
	TimestampTz now = GetCurrentTimestamp();
	const char *why = NULL;
	RouteStateKey key;
	RouteState *e;

	if (route_states == NULL)
		return NULL;
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.route_id = route->id;
	LWLockAcquire(route_state_lock, LW_SHARED);
	e = hash_search(route_states, &key, HASH_FIND, NULL);
	if (e != NULL)
	{
		if (e->breaker == BREAKER_OPEN && now < e->next_probe)
			why = "the route's circuit breaker is open";
		else if (e->hold_until > now)
			why = "the endpoint asked to wait (Retry-After)";
	}
	LWLockRelease(route_state_lock);
	return why;
}

/*
 * An endpoint of route answered "come back in retry_after_ms" (Retry-After):
 * hold the whole route until then (capped by txoutbox.retry_max_delay).
 * Called the moment the answer is read, so that no dispatcher starts
 * another request of the route in between.
 */
void
route_state_hold(const OutboxRoute *route, int64 retry_after_ms)
{
	TimestampTz until;
	RouteState *e;

	if (retry_after_ms <= 0)
		return;
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										Min(retry_after_ms, (int64) txoutbox_retry_max_delay_ms));
	LWLockAcquire(route_state_lock, LW_EXCLUSIVE);
	e = entry_for(route);
	if (e != NULL)
		e->hold_until = Max(e->hold_until, until);
	LWLockRelease(route_state_lock);
}

/*
 * Count a finished message's outcome in its route's state (see the file
 * header): the breaker of network routes.
 */
void
route_state_record(const PublishItem *item)
{
	const OutboxRoute *route = item->route;
	int			threshold;
	TimestampTz now;
	RouteState *e;

	if (route == NULL || item->outcome == PUBLISH_IN_FLIGHT)
		return;
	threshold = breaker_failures(route);
	if (threshold == 0)
		return;
	now = GetCurrentTimestamp();
	LWLockAcquire(route_state_lock, LW_EXCLUSIVE);
	e = entry_for(route);
	if (e == NULL)
	{
		LWLockRelease(route_state_lock);
		return;
	}
	if (item->outcome == PUBLISH_RETRY && item->held_back)
	{
		/* held back by txoutbox itself: says nothing of the endpoint */
		if (e->breaker == BREAKER_HALF_OPEN)
			e->probe_until = 0;
	}
	else if (item->outcome == PUBLISH_RETRY)
	{
		e->failures++;
		if (item->error)
			strlcpy(e->last_error, item->error, sizeof(e->last_error));
		if (e->breaker == BREAKER_HALF_OPEN)
		{
			/* the probe failed: open again, for longer */
			e->breaker = BREAKER_OPEN;
			e->since = now;
			e->cooldown_ms = Min((int64) Max(e->cooldown_ms, cooldown_base_ms(route)) * 2,
								 cooldown_max_ms(route));
			e->next_probe = TimestampTzPlusMilliseconds(now, e->cooldown_ms);
			e->probe_until = 0;
		}
		else if (e->breaker == BREAKER_CLOSED && e->failures >= threshold)
		{
			e->breaker = BREAKER_OPEN;
			e->since = now;
			e->cooldown_ms = cooldown_base_ms(route);
			e->next_probe = TimestampTzPlusMilliseconds(now, e->cooldown_ms);
		}
	}
	else
	{
		/* the endpoint answered (a success, or a refusal of one message) */
		e->failures = 0;
		if (e->breaker != BREAKER_CLOSED)
		{
			e->breaker = BREAKER_CLOSED;
			e->since = now;
			e->cooldown_ms = 0;
			e->probe_until = 0;
		}
	}
	LWLockRelease(route_state_lock);
}

/*
 * route's state as route_health() shows it: an open breaker whose probe
 * may go is half-open; the rate is that of the last whole second (0 after
 * a second with nothing sent).  A route with no state yet is closed.
 */
void
route_state_health(const OutboxRoute *route, RouteHealth *health)
{
	TimestampTz now = GetCurrentTimestamp();
	RouteStateKey key;
	RouteState *e;

	memset(health, 0, sizeof(*health));
	health->breaker = BREAKER_CLOSED;
	if (route_states == NULL)
		return;
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.route_id = route->id;
	LWLockAcquire(route_state_lock, LW_SHARED);
	e = hash_search(route_states, &key, HASH_FIND, NULL);
	if (e != NULL)
	{
		health->breaker = e->breaker;
		if (e->breaker == BREAKER_OPEN && now >= e->next_probe)
			health->breaker = BREAKER_HALF_OPEN;
		health->failures = e->failures;
		health->since = e->since;
		health->next_probe = e->next_probe;
		health->hold_until = e->hold_until;
		strlcpy(health->last_error, e->last_error, sizeof(health->last_error));
		health->rate = now - e->window_start >= 2 * USECS_PER_SEC ? 0 : e->rate;
	}
	LWLockRelease(route_state_lock);
}

/* Forget the routes of database dboid (it was dropped): called by the launcher. */
void
route_state_forget_database(Oid dboid)
{
	HASH_SEQ_STATUS seq;
	RouteState *e;

	if (route_states == NULL)
		return;
	LWLockAcquire(route_state_lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, route_states);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->key.dboid == dboid)
			(void) hash_search(route_states, &e->key, HASH_REMOVE, NULL);
	LWLockRelease(route_state_lock);
}
