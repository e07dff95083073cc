/*-------------------------------------------------------------------------
 *
 * publish_nats.c
 *	  The nats publisher (being written: see issue 12/13).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "publisher.h"

const Publisher nats_publisher = {
	.name = "nats",
	.kind = PUBLISHER_NETWORK,
#ifdef TXOUTBOX_WITH_NATS
	.unavailable = "the nats publisher is not written yet",
#else
	.unavailable = "txoutbox was built without libnats (Debian package libnats-dev)",
#endif
};
