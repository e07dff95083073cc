/*-------------------------------------------------------------------------
 *
 * fanout.h
 *	  enqueue()'s fan-out (fanout.c): which destinations a topic's message
 *	  goes to when fan-out routes match it, from a per-backend cache of the
 *	  routes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_FANOUT_H
#define TXOUTBOX_FANOUT_H

/* The destinations of a message whose topic has fan-out routes. */
typedef struct FanoutTargets
{
	bool		topic_route;	/* an ordinary route takes the topic too: it
								 * gets a copy of its own (route_id NULL) */
	int			nroutes;		/* the fan-out routes that match, */
	int64	   *route_ids;		/* in id order (palloc'd by the caller's
								 * context) */
} FanoutTargets;

extern bool fanout_targets(const char *topic, int len, FanoutTargets *targets);

#endif							/* TXOUTBOX_FANOUT_H */
