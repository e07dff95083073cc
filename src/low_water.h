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

extern TimestampTz low_water_mark(Datum route_exact, Datum route_prefixes, Datum fanout_ids,
								  const char *tenant);
extern TimestampTz low_water_room_mark(TimestampTz mark, Datum route_exact,
									   Datum route_prefixes, Datum fanout_ids,
									   Datum overlap_patterns, Datum overlap_room);
extern void low_water_forget(void);

#endif							/* TXOUTBOX_LOW_WATER_H */
