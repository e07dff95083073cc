/*-------------------------------------------------------------------------
 *
 * publish_amqp.c
 *	  The amqp publisher (being written: see issue 12/13).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "publisher.h"

const Publisher amqp_publisher = {
	.name = "amqp",
	.kind = PUBLISHER_NETWORK,
#ifdef TXOUTBOX_WITH_AMQP
	.unavailable = "the amqp publisher is not written yet",
#else
	.unavailable = "txoutbox was built without librabbitmq (Debian package librabbitmq-dev)",
#endif
};
