/*-------------------------------------------------------------------------
 *
 * routes.h
 *	  Routes (routes.c): where a topic's messages go, the delivery policy a
 *	  route's config may set, and the one matcher that picks a topic's
 *	  route everywhere (the dispatcher, claim's per-route policy, and
 *	  route_for() / the stats view).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_ROUTES_H
#define TXOUTBOX_ROUTES_H

#include "utils/jsonb.h"

#include "outbox.h"

struct Publisher;

/*
 * Delivery policy any route's config may set, whatever its publisher:
 * "ordered", "max_attempts", "retry_base_delay_ms", "retry_max_delay_ms",
 * "rate_limit", "ttl_ms", "fanout", and for network publishers the circuit
 * breaker's "breaker_failures", "breaker_cooldown_ms",
 * "breaker_max_cooldown_ms".
 */
typedef struct RoutePolicy
{
	bool		ordered;		/* per-key order: one message of a key at a time */
	int32		max_attempts;	/* 0: the message's own max_attempts */
	int64		retry_base_delay_ms;	/* < 0: txoutbox.retry_base_delay */
	int64		retry_max_delay_ms; /* < 0: txoutbox.retry_max_delay */
	double		rate_limit;		/* messages per second; 0: none */
	int64		ttl_ms;			/* not published later than this after
								 * created_at; 0: no limit */
	bool		fanout;			/* a subscription (see OutboxRoute.fanout) */
	int32		breaker_failures;	/* < 0: txoutbox.breaker_failures; 0: off */
	int32		breaker_cooldown_ms;	/* 0: txoutbox.breaker_cooldown */
	int32		breaker_max_cooldown_ms;	/* 0: txoutbox.breaker_max_cooldown */
} RoutePolicy;

/* An enabled route, with its config parsed by its publisher. */
typedef struct OutboxRoute
{
	int64		id;
	char	   *pattern;
	const struct Publisher *publisher;
	Jsonb	   *config;
	bool		fanout;			/* "fanout": true: a subscription.  Its
								 * messages are copies made for it at
								 * enqueue (route_id), never routed by
								 * topic; read from the config even when
								 * the rest of it is broken */
	RoutePolicy policy;			/* delivery policy from the config */
	void	   *parsed;			/* what the publisher's parse_config returned */
	char	   *broken;			/* why the route cannot be used, or NULL */
	bool		paused;			/* pause_route(): nothing is claimed for it */
	int			room;			/* how many messages it takes this round
								 * (INT_MAX: no limit) */
} OutboxRoute;

/* The enabled routes of one round. */
typedef struct RouteSet
{
	int			n;
	OutboxRoute *routes;
	RouteFilter with_room;		/* what a round may claim: the routes that
								 * have room now */
	RouteFilter all;			/* every enabled route (no overlap arrays) */
	Datum		run_ids;		/* int8[] of the ordered routes whose publisher
								 * works in the claiming transaction: they
								 * take a run of a key per round */
	int64		room;			/* sum of the routes' room, or INT_MAX */
	TimestampTz next_unblock;	/* when a route with no room may get some, or 0 */
} RouteSet;

/*
 * How specifically pattern (plen bytes) matches topic: ROUTE_NO_MATCH, or a
 * rank where higher wins (an exact match beats every prefix; a longer
 * prefix beats a shorter one).
 */
#define ROUTE_NO_MATCH	(-1)

/* the longest "ttl_ms" a route may set: ten years */
#define ROUTE_MAX_TTL_MS	INT64CONST(315360000000)
extern int	route_match_rank(const char *pattern, int plen, const char *topic, int tlen);

extern void route_policy_default(RoutePolicy *policy);
extern void route_policy_parse(Jsonb *config, RoutePolicy *policy);
extern void routes_load(RouteSet *set, MemoryContext cxt);
extern OutboxRoute *routes_match(const RouteSet *set, const char *topic);
extern OutboxRoute *routes_for_message(const RouteSet *set, const char *topic, int64 route_id);
extern bool routes_any_match(const RouteSet *set, const char *topic);
extern bool route_config_is_fanout(Jsonb *config);

#endif							/* TXOUTBOX_ROUTES_H */
