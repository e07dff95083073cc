/*-------------------------------------------------------------------------
 *
 * uuidv7.h
 *	  Time-ordered message ids (uuidv7.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_UUIDV7_H
#define TXOUTBOX_UUIDV7_H

#include "datatype/timestamp.h"
#include "utils/uuid.h"

extern void uuidv7_generate(pg_uuid_t *uuid);
extern void uuidv7_floor(TimestampTz ts, pg_uuid_t *uuid);
extern void uuid_to_cstring(const pg_uuid_t *uuid, char *out);	/* 37 bytes */

#endif							/* TXOUTBOX_UUIDV7_H */
