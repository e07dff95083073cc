/*-------------------------------------------------------------------------
 *
 * message.h
 *	  The row layout of txoutbox.messages (column numbers named as the
 *	  catalogs' Anum_ constants are, and the column list in that order), and
 *	  OutboxMessage, a claimed message as the publishers see it (message.c).
 *
 * The install and upgrade scripts create the columns in this order; a new
 * column goes at the end of both, and here.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_MESSAGE_H
#define TXOUTBOX_MESSAGE_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#define Anum_messages_id				1
#define Anum_messages_tenant_id			2
#define Anum_messages_org_id			3
#define Anum_messages_topic				4
#define Anum_messages_message_key		5
#define Anum_messages_payload			6
#define Anum_messages_headers			7
#define Anum_messages_correlation_id	8
#define Anum_messages_status			9
#define Anum_messages_attempt_count		10
#define Anum_messages_max_attempts		11
#define Anum_messages_last_error		12
#define Anum_messages_available_at		13
#define Anum_messages_locked_at			14
#define Anum_messages_locked_by			15
#define Anum_messages_published_at		16
#define Anum_messages_created_at		17
#define Anum_messages_updated_at		18
/* 0.2.0 */
#define Anum_messages_route_id			19
#define Anum_messages_fanout_of			20
#define Anum_messages_idempotency_key	21
#define Anum_messages_expires_at		22

#define Natts_messages					22
#define Natts_messages_0_1_0			18	/* a database not updated yet */

/* The columns in Anum order, for SELECT and RETURNING lists. */
#define MESSAGE_COLUMNS_0_1_0 \
	"id, tenant_id, org_id, topic, message_key, payload, headers, " \
	"correlation_id, status, attempt_count, max_attempts, last_error, " \
	"available_at, locked_at, locked_by, published_at, created_at, updated_at"
#define MESSAGE_COLUMNS \
	MESSAGE_COLUMNS_0_1_0 ", route_id, fanout_of, idempotency_key, expires_at"

/*
 * A row of outbox_lock_claimable: the columns of MESSAGE_COLUMNS, then
 * key_after (see OutboxMessage).
 */
#define Anum_claimed_key_after (Natts_messages + 1)
#define Natts_claimed Anum_claimed_key_after

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
	int64		route_id;		/* the fan-out route of a copy; 0: the topic's */
	TimestampTz expires_at;		/* not published after this (its own expiry
								 * or its route's ttl_ms, the earlier); 0:
								 * never */
	TimestampTz lease_until;	/* when its claim's lease ends (publishers
								 * outside the transaction must be done by
								 * then) */
	Datum		row;			/* the whole txoutbox.messages row */
	bool		has_key_after;	/* on an ordered route, it follows key_after: */
	pg_uuid_t	key_after;		/* the older message of its key it waits for */
} OutboxMessage;

/* How a row was claimed: what copy_claimed_message writes into its copy. */
typedef struct ClaimStamp
{
	const char *consumer;
	TimestampTz as_of;
	TimestampTz lock_until;
} ClaimStamp;

extern TupleDesc message_rowdesc(void);
extern OutboxMessage *message_copy_claimed(HeapTuple tup, TupleDesc tupdesc,
										   TupleDesc rowdesc, const ClaimStamp *stamp);

#endif							/* TXOUTBOX_MESSAGE_H */
