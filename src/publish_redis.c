/*-------------------------------------------------------------------------
 *
 * publish_redis.c
 *	  The redis publisher (being written: see issue 12/13).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "publisher.h"

const Publisher redis_publisher = {
	.name = "redis",
	.kind = PUBLISHER_NETWORK,
#ifdef TXOUTBOX_WITH_REDIS
	.unavailable = "the redis publisher is not written yet",
#else
	.unavailable = "txoutbox was built without libhiredis (Debian package libhiredis-dev)",
#endif
};
