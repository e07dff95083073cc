/*-------------------------------------------------------------------------
 *
 * low_water.h
 *	  Where the worker's claim scan may start (low_water.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_LOW_WATER_H
#define TXOUTBOX_LOW_WATER_H

#include "datatype/timestamp.h"

extern TimestampTz low_water_mark(Datum route_exact, Datum route_prefixes, Datum fanout_ids);

#endif							/* TXOUTBOX_LOW_WATER_H */
