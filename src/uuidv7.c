/*-------------------------------------------------------------------------
 *
 * uuidv7.c
 *	  Time-ordered message ids (RFC 9562 UUID version 7).
 *
 * Layout: 48 bits of Unix time in milliseconds, the version nibble, 12 bits
 * of sub-millisecond counter (rand_a, "method 3"), the variant bits and 62
 * random bits.  Within one backend the ids strictly increase: when the clock
 * has not moved past the last id's millisecond, the counter is incremented,
 * and when it overflows the millisecond is borrowed from the future.  New ids
 * therefore land at the right edge of the primary key index, and ordering by
 * id is ordering by creation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>

#include "fmgr.h"
#include "utils/timestamp.h"

#include "uuidv7.h"

/* State of this backend's generator: last millisecond and counter used. */
static uint64 last_ms = 0;
static uint32 last_seq = 0;

PG_FUNCTION_INFO_V1(txoutbox_uuid_v7);
PG_FUNCTION_INFO_V1(txoutbox_uuid_v7_floor);

/* Current Unix time in milliseconds. */
static uint64
unix_ms_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Write the 48-bit timestamp and the version/variant around the rest. */
static void
uuidv7_pack(pg_uuid_t *uuid, uint64 ms, uint32 seq, const uint8 *rand8)
{
	uuid->data[0] = (uint8) (ms >> 40);
	uuid->data[1] = (uint8) (ms >> 32);
	uuid->data[2] = (uint8) (ms >> 24);
	uuid->data[3] = (uint8) (ms >> 16);
	uuid->data[4] = (uint8) (ms >> 8);
	uuid->data[5] = (uint8) ms;
	uuid->data[6] = 0x70 | (uint8) ((seq >> 8) & 0x0F);
	uuid->data[7] = (uint8) seq;
	memcpy(&uuid->data[8], rand8, 8);
	uuid->data[8] = 0x80 | (uuid->data[8] & 0x3F);
}

/* A new UUIDv7, greater than every id this backend made before. */
void
uuidv7_generate(pg_uuid_t *uuid)
{
	uint8		rand8[8];
	uint64		ms = unix_ms_now();
	uint32		seq;

	if (!pg_strong_random(rand8, sizeof(rand8)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random values")));

	if (ms > last_ms)
	{
		/* new millisecond: start the counter low, leaving room to count up */
		seq = rand8[7] & 0x1FF;
	}
	else
	{
		ms = last_ms;
		seq = last_seq + 1;
		if (seq > 0xFFF)
		{
			ms++;
			seq = 0;
		}
	}
	last_ms = ms;
	last_seq = seq;
	uuidv7_pack(uuid, ms, seq, rand8);
}

/* The smallest UUIDv7 whose timestamp is not before ts. */
void
uuidv7_floor(TimestampTz ts, pg_uuid_t *uuid)
{
	static const uint8 zero8[8] = {0};
	int64		unix_us = ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	uint64		ms = unix_us <= 0 ? 0 : (uint64) ((unix_us + 999) / 1000);

	if (ms > UINT64CONST(0xFFFFFFFFFFFF))
		ms = UINT64CONST(0xFFFFFFFFFFFF);
	uuidv7_pack(uuid, ms, 0, zero8);
	uuid->data[6] = 0x00;		/* below any version-7 id of that millisecond */
	uuid->data[8] = 0x00;
}

/* Canonical text form into out[37]. */
void
uuid_to_cstring(const pg_uuid_t *uuid, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int			i,
				j = 0;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[uuid->data[i] >> 4];
		out[j++] = hex[uuid->data[i] & 0x0F];
	}
	out[j] = '\0';
}

/* SQL: txoutbox.uuid_v7() */
Datum
txoutbox_uuid_v7(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	uuidv7_generate(uuid);
	PG_RETURN_UUID_P(uuid);
}

/* SQL: txoutbox.uuid_v7_floor(timestamptz): lower bound of ids made at ts. */
Datum
txoutbox_uuid_v7_floor(PG_FUNCTION_ARGS)
{
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(0);
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timestamp must be finite")));
	uuidv7_floor(ts, uuid);
	PG_RETURN_UUID_P(uuid);
}
