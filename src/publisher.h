/*-------------------------------------------------------------------------
 *
 * publisher.h
 *	  The publisher interface and the registry (publisher.c).  A publisher
 *	  is one file that defines a Publisher and one line in the registry;
 *	  the dispatcher finds publishers by name and asks each what it is.
 *
 * Three kinds:
 *	- PUBLISHER_IN_TRANSACTION (notify): publish() runs inside the claiming
 *	  transaction and the outcome marks commit with it, so a message is
 *	  published if and only if it is marked (one row version per message);
 *	- PUBLISHER_AFTER_LEASE (function): the worker first leases the
 *	  messages (the attempt is counted and committed), then runs publish()
 *	  and the marks in a transaction of their own, so user code that ends
 *	  the process still used up an attempt and cannot be retried forever;
 *	- PUBLISHER_NETWORK (http, nats, amqp, redis): leased, then publish()
 *	  hands the messages to the network machinery (netpub.h) with no
 *	  transaction open and returns; their outcomes are collected in a later
 *	  round and marked in a short transaction.  A crash in between leaves
 *	  them processing until the worker restarts or the lease ends, then they
 *	  are claimed again (at-least-once).
 * In dispatch() (a session's transaction) every kind runs to completion
 * inside the caller's transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_PUBLISHER_H
#define TXOUTBOX_PUBLISHER_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "message.h"
#include "routes.h"

typedef enum PublisherKind
{
	PUBLISHER_IN_TRANSACTION,
	PUBLISHER_AFTER_LEASE,
	PUBLISHER_NETWORK
} PublisherKind;

typedef enum PublishOutcome
{
	PUBLISH_SUCCEEDED,
	PUBLISH_RETRY,				/* retry after backoff (or retry_after_ms) */
	PUBLISH_FAILED,				/* fail at once, no more attempts */
	PUBLISH_IN_FLIGHT			/* a network publisher still works on it: its
								 * outcome comes later (netpub_collect) */
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
	bool		held_back;		/* not_sent by txoutbox's own choice (its
								 * lease, its route's breaker): says nothing
								 * of the endpoint */
	bool		expired;		/* FAILED for its expiry, not sent: it counts
								 * no attempt (a lease's is given back);
								 * error, if any, is its last attempt's */
	int			key_rank;		/* on an ordered route, its place in the run of
								 * its key claimed this round (0: the key's
								 * head, or not ordered): published only
								 * after the one before it succeeded */
} PublishItem;

typedef struct Publisher
{
	const char *name;
	PublisherKind kind;

	/*
	 * Why this publisher is not available (it was built without its client
	 * library), or NULL.  add_route refuses such a route with 0A000.
	 */
	const char *unavailable;

	/*
	 * Check a route's config and return the publisher's parsed form of it
	 * (allocated in the current memory context).  Bad config is an ERROR
	 * with ERRCODE_INVALID_PARAMETER_VALUE; add_route calls this, and so
	 * does the dispatcher each round.
	 */
	void	   *(*parse_config) (Jsonb *config);

	/*
	 * Publish items[0..n-1] (all routed to this publisher) and set each
	 * item's outcome; network publishers may leave PUBLISH_IN_FLIGHT (see
	 * the file header).  Must not throw for a failure of one message; an
	 * ERROR is taken as a retryable failure of the whole batch.
	 */
	void		(*publish) (PublishItem *items, int n);

	/*
	 * Network publishers: how many more messages of route it takes now; the
	 * dispatcher leases no more than that (the others stay untouched) and
	 * claims nothing for a route at 0.  NULL: no limit.
	 */
	int			(*capacity) (const OutboxRoute *route);
} Publisher;

/*
 * The publishers, one per file (declared here so that each definition has
 * a prior declaration: PostgreSQL 18's -Wmissing-variable-declarations).
 */
extern const Publisher notify_publisher;
extern const Publisher function_publisher;
extern const Publisher http_publisher;
extern const Publisher nats_publisher;
extern const Publisher amqp_publisher;
extern const Publisher redis_publisher;

/* the registry (publisher.c lists every publisher) */
extern const Publisher *publisher_lookup(const char *name);
extern const char *publisher_names(void);

/* What a published body is: "body" in a route's config. */
typedef enum PublishBody
{
	PUBLISH_BODY_PAYLOAD,		/* the message's payload (the default) */
	PUBLISH_BODY_ENVELOPE,		/* the JSON envelope (SPEC.md, notify) */
	PUBLISH_BODY_CLOUDEVENTS	/* a CloudEvents 1.0 event in structured mode
								 * (content type CLOUDEVENTS_CONTENT_TYPE) */
} PublishBody;

/* The media type of a body in PUBLISH_BODY_CLOUDEVENTS (JSON otherwise). */
#define CLOUDEVENTS_CONTENT_TYPE "application/cloudevents+json"

/* what publishers share (publisher.c) */
extern void publisher_build_envelope(StringInfo buf, const OutboxMessage *msg,
									 bool with_payload);
extern void publisher_build_cloudevent(StringInfo buf, const OutboxMessage *msg, bool with_data);
extern void publisher_build_body(StringInfo buf, const OutboxMessage *msg, PublishBody body);
extern PublishBody publisher_config_body(Jsonb *config, const char *publisher);
extern const char *publisher_body_content_type(PublishBody body);
extern void publisher_check_placeholders(const char *template, const char *field,
										 const char *publisher);
extern char *publisher_expand_placeholders(const char *template, const OutboxMessage *msg);
extern void jsonb_config_check_keys(Jsonb *config, const char *publisher,
									const char *const *allowed);
extern char *jsonb_config_string(Jsonb *config, const char *key);
extern bool jsonb_config_int(Jsonb *config, const char *key, int64 *value);
extern bool jsonb_config_bool(Jsonb *config, const char *key, bool *value);
extern int	jsonb_config_headers(Jsonb *config, char ***names, char ***values);
extern bool try_in_subtransaction(void (*fn) (void *arg), void *arg, char **error,
								  bool (*own_cancel) (void));
extern void publisher_set_outcome(PublishItem *item, PublishOutcome outcome,
								  const char *fmt,...) pg_attribute_printf(3, 4);
extern void publisher_set_expired(PublishItem *item);

#endif							/* TXOUTBOX_PUBLISHER_H */
