/*-------------------------------------------------------------------------
 *
 * message_insert.h
 *	  enqueue()'s insert without a per-row executor (message_insert.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_MESSAGE_INSERT_H
#define TXOUTBOX_MESSAGE_INSERT_H

extern bool message_insert(Datum *values, bool *isnull, Datum *result);

#endif							/* TXOUTBOX_MESSAGE_INSERT_H */
