/*-------------------------------------------------------------------------
 *
 * publisher.h
 *	  The publisher interface.  A publisher is one file that defines a
 *	  Publisher and is listed in publisher.c; the dispatcher never names one.
 *
 * Two kinds:
 *	- transactional (notify, function): publish() runs inside the claiming
 *	  transaction, and the outcome marks commit with it, so a message is
 *	  published if and only if it is marked;
 *	- external (http): publish() runs with no transaction open, after the
 *	  claims (leases) committed.  It may leave items PUBLISH_IN_FLIGHT and
 *	  return; collect() hands their outcomes back in a later round, and the
 *	  dispatcher marks them in a short transaction, so one slow endpoint
 *	  does not hold up the others.  A crash in between leaves the messages
 *	  processing until their lease ends (or the worker restarts), then they
 *	  are claimed again (at-least-once).  Inside a transaction (dispatch())
 *	  an external publisher must finish every item before returning.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_PUBLISHER_H
#define TXOUTBOX_PUBLISHER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

struct Publisher;

/* A claimed message, copied out of SPI into the round's memory context. */
typedef struct OutboxMessage
{
	pg_uuid_t	id;
	char		id_str[37];
	char	   *topic;
	char	   *message_key;	/* NULL when null, likewise below */
	char	   *correlation_id;
	char	   *tenant_id;
	char	   *org_id;
	Jsonb	   *payload;
	Jsonb	   *headers;
	int32		attempt_count;	/* this attempt's number */
	int32		max_attempts;
	TimestampTz created_at;
	TimestampTz lease_until;	/* when its claim's lease ends (external
								 * publishers must be done by then) */
	Datum		row;			/* the whole txoutbox.messages row */
} OutboxMessage;

/*
 * Delivery policy any route's config may set, whatever its publisher:
 * "ordered", "max_attempts", "retry_base_delay_ms", "retry_max_delay_ms".
 */
typedef struct RoutePolicy
{
	bool		ordered;		/* per-key order: one message of a key at a time */
	int32		max_attempts;	/* 0: the message's own max_attempts */
	int64		retry_base_delay_ms;	/* < 0: txoutbox.retry_base_delay */
	int64		retry_max_delay_ms; /* < 0: txoutbox.retry_max_delay */
} RoutePolicy;

/* An enabled route, with its config parsed by its publisher. */
typedef struct OutboxRoute
{
	int64		id;
	char	   *pattern;
	bool		is_prefix;		/* pattern ends in '*' */
	int			prefix_len;		/* characters before the '*' */
	const struct Publisher *publisher;
	Jsonb	   *config;
	RoutePolicy policy;			/* delivery policy from the config */
	void	   *parsed;			/* what parse_config returned */
	char	   *broken;			/* why parse_config refused it, or NULL */
} OutboxRoute;

typedef enum PublishOutcome
{
	PUBLISH_SUCCEEDED,
	PUBLISH_RETRY,				/* retry after backoff (or retry_after_ms) */
	PUBLISH_FAILED,				/* fail at once, no more attempts */
	PUBLISH_IN_FLIGHT			/* external publisher still working on it:
								 * its outcome comes later from collect() */
} PublishOutcome;

/* One message to publish, and what became of it. */
typedef struct PublishItem
{
	OutboxMessage *msg;
	OutboxRoute *route;
	PublishOutcome outcome;
	char	   *error;			/* for RETRY and FAILED: goes to last_error */
	int64		retry_after_ms; /* < 0: use the backoff */
	bool		not_sent;		/* RETRY without an attempt: the one its lease
								 * counted is given back */
} PublishItem;

typedef struct Publisher
{
	const char *name;
	bool		transactional;

	/*
	 * Check a route's config and return the publisher's parsed form of it
	 * (allocated in the current memory context).  Bad config is an ERROR
	 * with ERRCODE_INVALID_PARAMETER_VALUE; add_route calls this, and so
	 * does the dispatcher each round.
	 */
	void	   *(*parse_config) (Jsonb *config);

	/*
	 * Publish items[0..n-1] (all routed to this publisher) and set each
	 * item's outcome.  Must not throw for a failure of one message; an
	 * ERROR is taken as a retryable failure of the whole batch.
	 */
	void		(*publish) (PublishItem *items, int n);

	/*
	 * External publishers that keep work in flight (else NULL).  collect():
	 * the items finished since the last call, in *items (valid until the
	 * next call; their msg and route point into the publisher's memory and
	 * carry only the id, attempt and policy); while none has, it may wait up
	 * to wait_ms for one, returning early when the process latch is set.
	 * in_flight(): items not yet collected.  capacity(route): how many more
	 * items of the route it takes now; the dispatcher leases no more than
	 * that (the others stay untouched) and claims nothing for a route at 0.
	 */
	int			(*collect) (PublishItem **items, long wait_ms);
	int			(*in_flight) (void);
	int			(*capacity) (int64 route_id);
} Publisher;

extern const Publisher notify_publisher;
extern const Publisher function_publisher;
extern const Publisher http_publisher;

/* The enabled routes of one round. */
typedef struct RouteSet
{
	int			n;
	OutboxRoute *routes;
	/* what a round may claim: the routes that have room now */
	Datum		exact;			/* text[] of exact patterns */
	Datum		prefixes;		/* text[] of the prefixes of prefix patterns */
	/* the same for every enabled route */
	Datum		all_exact;
	Datum		all_prefixes;
} RouteSet;

/* routes.c */
extern void route_policy_default(RoutePolicy *policy);
extern void route_policy_parse(Jsonb *config, RoutePolicy *policy);
extern void routes_load(RouteSet *set, MemoryContext cxt);
extern OutboxRoute *routes_match(const RouteSet *set, const char *topic);

/* publisher.c */
extern const Publisher *publisher_lookup(const char *name);
extern void publisher_build_envelope(StringInfo buf, const OutboxMessage *msg,
									 bool with_payload);
extern void jsonb_config_check_keys(Jsonb *config, const char *publisher,
									const char *const *allowed);
extern char *jsonb_config_string(Jsonb *config, const char *key);
extern bool jsonb_config_int(Jsonb *config, const char *key, int64 *value);
extern bool try_in_subtransaction(void (*fn) (void *arg), void *arg, char **error,
								  bool (*own_cancel) (void));
extern void publisher_set_outcome(PublishItem *item, PublishOutcome outcome,
								  const char *fmt,...) pg_attribute_printf(3, 4);

#endif							/* TXOUTBOX_PUBLISHER_H */
