/*-------------------------------------------------------------------------
 *
 * message_insert.h
 *	  enqueue()'s insert without a per-row executor (message_insert.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_MESSAGE_INSERT_H
#define TXOUTBOX_MESSAGE_INSERT_H

typedef enum MessageInsertResult
{
	MESSAGE_INSERT_NOT_FAST,	/* nothing done: run the INSERT instead */
	MESSAGE_INSERTED,
	MESSAGE_INSERT_EXISTS		/* the idempotency key is taken: the row
								 * returned is the message holding it */
} MessageInsertResult;

extern MessageInsertResult message_insert(Datum *values, bool *isnull, bool check_key,
										  Datum *result);

#endif							/* TXOUTBOX_MESSAGE_INSERT_H */
