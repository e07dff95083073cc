/*-------------------------------------------------------------------------
 *
 * publish_http.c
 *	  The http publisher: each message is a webhook request, signed the
 *	  Standard Webhooks way.  Its parts: http_config.c (a route's config),
 *	  http_request.c (a message's request), http_transport.c (libcurl on the
 *	  network machinery); this file makes them a Publisher.
 *
 * Capacity: a route with txoutbox.http_max_concurrency requests waiting or
 * running is not claimed from until some finish; otherwise it takes up to
 * 32 times that many (one claim's worth).  At most three quarters of the
 * concurrency go to one route, so a hanging endpoint delays only its own
 * messages.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "http.h"
#include "settings.h"

/* Most requests one route may have running: the others keep a quarter. */
static int
http_route_limit(const OutboxRoute *route)
{
	int			total = Max(txoutbox_http_max_concurrency, 1);

	return Max(1, total - total / 4);
}

/* Publisher.publish: hand the requests to the network machinery. */
static void
http_publish(PublishItem *items, int n)
{
	netpub_publish(&http_transport, items, n, http_route_limit);
}

/* Publisher.capacity (see the file header). */
static int
http_capacity(const OutboxRoute *route)
{
	return netpub_capacity(&http_transport, route, Max(txoutbox_http_max_concurrency, 1));
}

const Publisher http_publisher = {
	.name = "http",
	.kind = PUBLISHER_NETWORK,
	.parse_config = http_parse_config,
	.publish = http_publish,
	.capacity = http_capacity,
};
