/*
 * amqp_baseline: the baseline of bench/amqp.sh.  A plain rabbitmq-c client
 * publishing N messages with publisher confirms to an exchange, the way the
 * amqp publisher does (persistent, mandatory, the same properties and
 * headers, a window of WINDOW unconfirmed messages and at most 1 MB
 * unconfirmed), and waiting until the broker confirmed every one.  Prints
 * the messages per second from the first publish to the last confirm.
 *
 *   amqp_baseline PORT USER PASSWORD EXCHANGE ROUTING_KEY N WINDOW BODY
 *
 * Built by bench/amqp.sh: cc -O2 -o amqp_baseline bench/amqp_baseline.c -lrabbitmq
 */
#if defined(__has_include)
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#define HAVE_HEADERS 1
#endif
#endif
#ifndef HAVE_HEADERS
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW_BYTES (1024 * 1024)

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
check(amqp_rpc_reply_t r, const char *what)
{
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		fprintf(stderr, "amqp_baseline: %s failed\n", what);
		exit(1);
	}
}

int
main(int argc, char **argv)
{
	amqp_connection_state_t conn;
	amqp_socket_t *s;
	const char *exchange, *rk, *body;
	long		n, window, sent = 0, confirmed = 0;
	uint64_t	low = 1;		/* lowest tag not confirmed yet */
	char	   *acked;
	size_t		msg_bytes, unconfirmed_bytes = 0;
	double		t0, t1;
	int			fd;

	if (argc != 9)
	{
		fprintf(stderr, "usage: amqp_baseline PORT USER PASSWORD EXCHANGE ROUTING_KEY N WINDOW BODY\n");
		return 2;
	}
	exchange = argv[4];
	rk = argv[5];
	n = atol(argv[6]);
	window = atol(argv[7]);
	body = argv[8];

	conn = amqp_new_connection();
	s = amqp_tcp_socket_new(conn);
	if (amqp_socket_open(s, "127.0.0.1", atoi(argv[1])) != AMQP_STATUS_OK)
	{
		fprintf(stderr, "amqp_baseline: cannot connect\n");
		return 1;
	}
	check(amqp_login(conn, "/", 0, 131072, 10, AMQP_SASL_METHOD_PLAIN, argv[2], argv[3]), "login");
	amqp_channel_open(conn, 1);
	check(amqp_get_rpc_reply(conn), "channel.open");
	amqp_confirm_select(conn, 1);
	check(amqp_get_rpc_reply(conn), "confirm.select");
	fd = amqp_get_sockfd(conn);
	msg_bytes = strlen(body) + 400;		/* body, properties, headers, frames */
	acked = calloc(n + 1, 1);

	t0 = now_s();
	while (confirmed < n)
	{
		struct pollfd pfd = {fd, POLLIN, 0};

		/* publish while the window has room */
		while (sent < n && sent - confirmed < window && unconfirmed_bytes + msg_bytes <= WINDOW_BYTES)
		{
			amqp_basic_properties_t p;
			amqp_table_entry_t h[4];
			char		id[40], key[32];

			snprintf(id, sizeof(id), "0190d8a2-0000-7000-8000-%012ld", sent);
			snprintf(key, sizeof(key), "key-%ld", sent);
			memset(&p, 0, sizeof(p));
			h[0].key = amqp_cstring_bytes("txoutbox-topic");
			h[0].value.kind = AMQP_FIELD_KIND_UTF8;
			h[0].value.value.bytes = amqp_cstring_bytes(rk);
			h[1].key = amqp_cstring_bytes("txoutbox-attempt");
			h[1].value.kind = AMQP_FIELD_KIND_I32;
			h[1].value.value.i32 = 1;
			h[2].key = amqp_cstring_bytes("txoutbox-key");
			h[2].value.kind = AMQP_FIELD_KIND_UTF8;
			h[2].value.value.bytes = amqp_cstring_bytes(key);
			p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
				AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
				AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
			p.content_type = amqp_cstring_bytes("application/json");
			p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
			p.message_id = amqp_cstring_bytes(id);
			p.type = amqp_cstring_bytes(rk);
			p.timestamp = (uint64_t) time(NULL);
			p.app_id = amqp_cstring_bytes("txoutbox");
			p.headers.num_entries = 3;
			p.headers.entries = h;
			if (amqp_basic_publish(conn, 1, amqp_cstring_bytes(exchange), amqp_cstring_bytes(rk), 1, 0,
								   &p, amqp_cstring_bytes(body)) != AMQP_STATUS_OK)
			{
				fprintf(stderr, "amqp_baseline: publish failed\n");
				return 1;
			}
			sent++;
			unconfirmed_bytes += msg_bytes;
		}
		/* read the confirms */
		if (!amqp_frames_enqueued(conn) && !amqp_data_in_buffer(conn))
			(void) poll(&pfd, 1, 1000);
		for (;;)
		{
			struct timeval zero = {0, 0};
			amqp_frame_t f;
			int			st = amqp_simple_wait_frame_noblock(conn, &f, &zero);

			if (st == AMQP_STATUS_TIMEOUT)
				break;
			if (st != AMQP_STATUS_OK)
			{
				fprintf(stderr, "amqp_baseline: read failed: %s\n", amqp_error_string2(st));
				return 1;
			}
			if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD)
			{
				amqp_basic_ack_t *a = f.payload.method.decoded;
				uint64_t	t = a->multiple ? low : a->delivery_tag;

				for (; t <= a->delivery_tag && t <= (uint64_t) n; t++)
					if (!acked[t])
					{
						acked[t] = 1;
						confirmed++;
						unconfirmed_bytes -= msg_bytes;
					}
				while (low <= (uint64_t) n && acked[low])
					low++;
			}
			else if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_NACK_METHOD)
			{
				fprintf(stderr, "amqp_baseline: the broker nacked a message\n");
				return 1;
			}
			else if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_RETURN_METHOD)
			{
				fprintf(stderr, "amqp_baseline: a message was unroutable\n");
				return 1;
			}
		}
		amqp_maybe_release_buffers(conn);
	}
	t1 = now_s();
	printf("%.0f\n", n / (t1 - t0));
	amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
	return 0;
}
