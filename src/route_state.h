/*-------------------------------------------------------------------------
 *
 * route_state.h
 *	  What every dispatcher knows of a route, in shared memory
 *	  (route_state.c): its circuit breaker, its rate limit's token bucket,
 *	  a pause asked for by the endpoint (Retry-After), and the rate it is
 *	  sending at; plus the operator's pause, kept in txoutbox.routes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_ROUTE_STATE_H
#define TXOUTBOX_ROUTE_STATE_H

#include "publisher.h"
#include "routes.h"

#define ROUTE_STATE_MAX		1024	/* routes with shared state, all databases */

typedef enum BreakerState
{
	BREAKER_CLOSED = 0,
	BREAKER_OPEN,
	BREAKER_HALF_OPEN
} BreakerState;

/* What route_health() shows of a route's state. */
typedef struct RouteHealth
{
	BreakerState breaker;
	int			failures;
	TimestampTz since;
	TimestampTz next_probe;
	TimestampTz hold_until;
	char		last_error[256];
	double		rate;			/* messages sent per second, lately */
} RouteHealth;

extern Size route_state_shmem_size(void);
extern void route_state_shmem_init(void);

extern int	route_state_room(const OutboxRoute *route, TimestampTz *next_change);
extern int	route_state_take(const OutboxRoute *route, int n);
extern const char *route_state_blocked(const OutboxRoute *route);
extern void route_state_hold(const OutboxRoute *route, int64 retry_after_ms);
extern void route_state_record(const PublishItem *item);
extern void route_state_health(const OutboxRoute *route, RouteHealth *health);
extern void route_state_forget_database(Oid dboid);

#endif							/* TXOUTBOX_ROUTE_STATE_H */
