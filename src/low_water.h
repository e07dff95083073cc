/*-------------------------------------------------------------------------
 *
 * low_water.h
 *	  Where a claim scan may start (low_water.c): the worker's, and
 *	  claim()'s in a session.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_LOW_WATER_H
#define TXOUTBOX_LOW_WATER_H

#include "datatype/timestamp.h"

#include "outbox.h"

extern TimestampTz low_water_mark(const RouteFilter *routes, const char *tenant);
extern TimestampTz low_water_room_mark(TimestampTz mark, const RouteFilter *routes);
extern void low_water_forget(void);

#endif							/* TXOUTBOX_LOW_WATER_H */
