/*-------------------------------------------------------------------------
 *
 * publish_notify.c
 *	  The notify publisher: one NOTIFY per message on the route's channel,
 *	  whose payload is the message's JSON envelope (or, with "body":
 *	  "cloudevents", the message as a CloudEvent in structured mode).
 *
 * Transactional: the notifications are queued in the claiming transaction
 * and delivered when it commits, together with the succeeded marks.  An
 * envelope that would pass PostgreSQL's 8000-byte payload limit goes out
 * without the payload (a CloudEvent without its data) and with
 * "truncated": true (listeners call get(id)).
 * When the notification queue is more than half full (a listener is not
 * reading), the messages are retried later rather than risking an error at
 * commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/async.h"
#include "fmgr.h"
#include "utils/fmgrprotos.h"

#include "publisher.h"

#define NOTIFY_MAX_PAYLOAD 8000		/* NOTIFY_PAYLOAD_MAX_LENGTH in async.c */
#define NOTIFY_QUEUE_RETRY_ABOVE 0.5

static const char *const notify_keys[] = {"channel", "body", NULL};

/* A notify route's config, parsed. */
typedef struct NotifyRoute
{
	char	   *channel;
	bool		cloudevents;	/* "body": "cloudevents" (else the envelope) */
} NotifyRoute;

/*
 * Config {"channel": "name", "body": "envelope" | "cloudevents"}; the
 * default channel is txoutbox, the default body the envelope.
 */
static void *
notify_parse_config(Jsonb *config)
{
	NotifyRoute *route = palloc0(sizeof(NotifyRoute));
	char	   *body;

	jsonb_config_check_keys(config, "notify", notify_keys);
	route->channel = jsonb_config_string(config, "channel");
	if (route->channel == NULL)
		route->channel = pstrdup("txoutbox");
	if (route->channel[0] == '\0' || strlen(route->channel) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("notify channel must be 1 to %d bytes long", NAMEDATALEN - 1)));
	body = jsonb_config_string(config, "body");
	if (body != NULL && strcmp(body, "envelope") != 0)
	{
		if (publisher_config_body(config, "notify") != PUBLISH_BODY_CLOUDEVENTS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("route config field \"body\" of a notify route must be \"envelope\" or \"cloudevents\"")));
		route->cloudevents = true;
	}
	return route;
}

/* The notification of msg for route, with or without its payload. */
static void
build_notification(StringInfo buf, const NotifyRoute *route, const OutboxMessage *msg,
				   bool with_payload)
{
	if (route->cloudevents)
		publisher_build_cloudevent(buf, msg, with_payload);
	else
		publisher_build_envelope(buf, msg, with_payload);
}

/* Queue one notification per message. */
static void
notify_publish(PublishItem *items, int n)
{
	double		usage = DatumGetFloat8(DirectFunctionCall1(pg_notification_queue_usage, (Datum) 0));
	StringInfoData buf;
	int			i;

	if (usage > NOTIFY_QUEUE_RETRY_ABOVE)
	{
		for (i = 0; i < n; i++)
			publisher_set_outcome(&items[i], PUBLISH_RETRY,
								  "notification queue is %.0f%% full; a listener is not reading",
								  usage * 100);
		return;
	}

	initStringInfo(&buf);
	for (i = 0; i < n; i++)
	{
		const NotifyRoute *route = (const NotifyRoute *) items[i].route->parsed;

		resetStringInfo(&buf);
		build_notification(&buf, route, items[i].msg, true);
		if (buf.len >= NOTIFY_MAX_PAYLOAD)
		{
			resetStringInfo(&buf);
			build_notification(&buf, route, items[i].msg, false);
		}
		if (buf.len >= NOTIFY_MAX_PAYLOAD)
		{
			/* even the headers are too big: id and topic only */
			resetStringInfo(&buf);
			appendStringInfo(&buf, "{\"id\":\"%s\",\"truncated\":true}", items[i].msg->id_str);
		}
		Async_Notify(route->channel, buf.data);
		publisher_set_outcome(&items[i], PUBLISH_SUCCEEDED, NULL);
	}
	pfree(buf.data);
}

const Publisher notify_publisher = {
	.name = "notify",
	.kind = PUBLISHER_IN_TRANSACTION,
	.parse_config = notify_parse_config,
	.publish = notify_publish,
};
