/*-------------------------------------------------------------------------
 *
 * publish_http.c
 *	  The http publisher (webhooks).  UNDER CONSTRUCTION in this session:
 *	  replaced by the libcurl multi implementation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "publisher.h"

/* Not built yet: refuse every config so no route can use it. */
static void *
http_parse_config(Jsonb *config)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("the http publisher is not available yet")));
	return NULL;
}

/* Never called: no http route can be added. */
static void
http_publish(PublishItem *items, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		publisher_set_outcome(&items[i], PUBLISH_RETRY, "http publisher not available");
}

const Publisher http_publisher = {
	.name = "http",
	.transactional = false,
	.parse_config = http_parse_config,
	.publish = http_publish,
};
