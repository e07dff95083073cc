/*
 * amqp_tool: a small RabbitMQ client for the amqp TAP tests (and the
 * benchmark's setup), compiled by them with librabbitmq:
 *   cc -o amqp_tool test/amqp_tool.c -lrabbitmq
 *
 *   amqp_tool [-h host] [-p port] [-u user] [-P password] [-v vhost] COMMAND ARGS...
 *     wait SECONDS                     until a login succeeds (the node is up)
 *     exchange NAME [TYPE]             declare a durable exchange (topic)
 *     queue NAME [EXCHANGE KEY]...     declare a durable queue, bind it
 *     purge NAME                       empty a queue
 *     count NAME                       print how many messages a queue holds
 *     consume NAME FILE [IDLE_MS]      take the messages a queue holds (auto-ack;
 *                                      stops early when none came for IDLE_MS,
 *                                      default 2000), one line of tab-separated
 *                                      fields per message into FILE (see
 *                                      write_message); prints how many
 *
 * Test code: it blocks, exits 1 on the first error, and prints the broker's
 * reply.
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

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";
static int	port = 5672;
static const char *user = "guest";
static const char *password = "guest";
static const char *vhost = "/";
static amqp_connection_state_t conn;

static void
die_reply(amqp_rpc_reply_t r, const char *what)
{
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return;
	if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
		fprintf(stderr, "amqp_tool: %s: %s\n", what, amqp_error_string2(r.library_error));
	else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
	{
		amqp_channel_close_t *c = r.reply.decoded;

		fprintf(stderr, "amqp_tool: %s: channel closed: %u %.*s\n", what, c->reply_code,
				(int) c->reply_text.len, (char *) c->reply_text.bytes);
	}
	else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
	{
		amqp_connection_close_t *c = r.reply.decoded;

		fprintf(stderr, "amqp_tool: %s: connection closed: %u %.*s\n", what, c->reply_code,
				(int) c->reply_text.len, (char *) c->reply_text.bytes);
	}
	else
		fprintf(stderr, "amqp_tool: %s: unexpected reply 0x%08x\n", what, r.reply.id);
	exit(1);
}

/* Connect, log in and open channel 1; false (quietly) when it fails and quiet. */
static int
open_connection(int quiet)
{
	amqp_socket_t *s;
	amqp_rpc_reply_t r;

	conn = amqp_new_connection();
	s = amqp_tcp_socket_new(conn);
	if (s == NULL || amqp_socket_open(s, host, port) != AMQP_STATUS_OK)
	{
		if (!quiet)
			fprintf(stderr, "amqp_tool: cannot connect to %s:%d\n", host, port);
		amqp_destroy_connection(conn);
		return 0;
	}
	r = amqp_login(conn, vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, user, password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		if (quiet)
		{
			amqp_destroy_connection(conn);
			return 0;
		}
		die_reply(r, "login");
	}
	amqp_channel_open(conn, 1);
	die_reply(amqp_get_rpc_reply(conn), "channel.open");
	return 1;
}

/* A field: tab, newline, carriage return and backslash escaped; NULL as \N. */
static void
field(FILE *f, const void *bytes, size_t len, int present)
{
	const unsigned char *p = bytes;
	size_t		i;

	fputc('\t', f);
	if (!present)
	{
		fputs("\\N", f);
		return;
	}
	for (i = 0; i < len; i++)
	{
		if (p[i] == '\t')
			fputs("\\t", f);
		else if (p[i] == '\n')
			fputs("\\n", f);
		else if (p[i] == '\r')
			fputs("\\r", f);
		else if (p[i] == '\\')
			fputs("\\\\", f);
		else
			fputc(p[i], f);
	}
}

static void
field_str(FILE *f, const char *s)
{
	field(f, s, strlen(s), 1);
}

static void
field_value(FILE *f, const amqp_field_value_t *v)
{
	char		buf[64];

	switch (v->kind)
	{
		case AMQP_FIELD_KIND_UTF8:
		case AMQP_FIELD_KIND_BYTES:
			field(f, v->value.bytes.bytes, v->value.bytes.len, 1);
			return;
		case AMQP_FIELD_KIND_I8:
			snprintf(buf, sizeof(buf), "%d", v->value.i8);
			break;
		case AMQP_FIELD_KIND_U8:
			snprintf(buf, sizeof(buf), "%u", v->value.u8);
			break;
		case AMQP_FIELD_KIND_I16:
			snprintf(buf, sizeof(buf), "%d", v->value.i16);
			break;
		case AMQP_FIELD_KIND_U16:
			snprintf(buf, sizeof(buf), "%u", v->value.u16);
			break;
		case AMQP_FIELD_KIND_I32:
			snprintf(buf, sizeof(buf), "%" PRId32, v->value.i32);
			break;
		case AMQP_FIELD_KIND_U32:
			snprintf(buf, sizeof(buf), "%" PRIu32, v->value.u32);
			break;
		case AMQP_FIELD_KIND_I64:
			snprintf(buf, sizeof(buf), "%" PRId64, v->value.i64);
			break;
		case AMQP_FIELD_KIND_BOOLEAN:
			snprintf(buf, sizeof(buf), "%s", v->value.boolean ? "true" : "false");
			break;
		default:
			snprintf(buf, sizeof(buf), "(kind %c)", v->kind);
			break;
	}
	field_str(f, buf);
}

/*
 * One consumed message as a line of tab-separated fields: "msg", then
 * message_id, correlation_id, content_type, type, app_id, timestamp,
 * delivery_mode, exchange, routing_key, redelivered, body, then each
 * header's name and value.
 */
static void
write_message(FILE *f, const amqp_envelope_t *env)
{
	const amqp_basic_properties_t *p = &env->message.properties;
	char		buf[32];
	int			i;

	fputs("msg", f);
	field(f, p->message_id.bytes, p->message_id.len, p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG);
	field(f, p->correlation_id.bytes, p->correlation_id.len, p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG);
	field(f, p->content_type.bytes, p->content_type.len, p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG);
	field(f, p->type.bytes, p->type.len, p->_flags & AMQP_BASIC_TYPE_FLAG);
	field(f, p->app_id.bytes, p->app_id.len, p->_flags & AMQP_BASIC_APP_ID_FLAG);
	snprintf(buf, sizeof(buf), "%" PRIu64, p->timestamp);
	field(f, buf, strlen(buf), p->_flags & AMQP_BASIC_TIMESTAMP_FLAG);
	snprintf(buf, sizeof(buf), "%u", p->delivery_mode);
	field(f, buf, strlen(buf), p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG);
	field(f, env->exchange.bytes, env->exchange.len, 1);
	field(f, env->routing_key.bytes, env->routing_key.len, 1);
	field_str(f, env->redelivered ? "true" : "false");
	field(f, env->message.body.bytes, env->message.body.len, 1);
	if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
		for (i = 0; i < p->headers.num_entries; i++)
		{
			field(f, p->headers.entries[i].key.bytes, p->headers.entries[i].key.len, 1);
			field_value(f, &p->headers.entries[i].value);
		}
	fputc('\n', f);
}

static long
queue_count(const char *name)
{
	amqp_queue_declare_ok_t *ok = amqp_queue_declare(conn, 1, amqp_cstring_bytes(name), 1, 0, 0, 0,
													 amqp_empty_table);

	die_reply(amqp_get_rpc_reply(conn), "queue.declare (passive)");
	return (long) ok->message_count;
}

int
main(int argc, char **argv)
{
	int			opt;
	const char *cmd;

	while ((opt = getopt(argc, argv, "h:p:u:P:v:")) != -1)
	{
		switch (opt)
		{
			case 'h':
				host = optarg;
				break;
			case 'p':
				port = atoi(optarg);
				break;
			case 'u':
				user = optarg;
				break;
			case 'P':
				password = optarg;
				break;
			case 'v':
				vhost = optarg;
				break;
			default:
				fprintf(stderr, "usage: amqp_tool [-h host] [-p port] [-u user] [-P password] [-v vhost] command args...\n");
				return 2;
		}
	}
	if (optind >= argc)
	{
		fprintf(stderr, "amqp_tool: no command\n");
		return 2;
	}
	cmd = argv[optind++];

	if (strcmp(cmd, "wait") == 0)
	{
		int			seconds = optind < argc ? atoi(argv[optind]) : 60;
		int			i;

		for (i = 0; i < seconds * 10; i++)
		{
			if (open_connection(1))
			{
				amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
				amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
				amqp_destroy_connection(conn);
				return 0;
			}
			usleep(100000);
		}
		fprintf(stderr, "amqp_tool: no login within %d s\n", seconds);
		return 1;
	}

	open_connection(0);
	if (strcmp(cmd, "exchange") == 0 && optind < argc)
	{
		const char *type = optind + 1 < argc ? argv[optind + 1] : "topic";

		amqp_exchange_declare(conn, 1, amqp_cstring_bytes(argv[optind]), amqp_cstring_bytes(type),
							  0, 1, 0, 0, amqp_empty_table);
		die_reply(amqp_get_rpc_reply(conn), "exchange.declare");
	}
	else if (strcmp(cmd, "queue") == 0 && optind < argc)
	{
		const char *name = argv[optind++];

		amqp_queue_declare(conn, 1, amqp_cstring_bytes(name), 0, 1, 0, 0, amqp_empty_table);
		die_reply(amqp_get_rpc_reply(conn), "queue.declare");
		for (; optind + 1 < argc; optind += 2)
		{
			amqp_queue_bind(conn, 1, amqp_cstring_bytes(name), amqp_cstring_bytes(argv[optind]),
							amqp_cstring_bytes(argv[optind + 1]), amqp_empty_table);
			die_reply(amqp_get_rpc_reply(conn), "queue.bind");
		}
	}
	else if (strcmp(cmd, "purge") == 0 && optind < argc)
	{
		amqp_queue_purge(conn, 1, amqp_cstring_bytes(argv[optind]));
		die_reply(amqp_get_rpc_reply(conn), "queue.purge");
	}
	else if (strcmp(cmd, "count") == 0 && optind < argc)
		printf("%ld\n", queue_count(argv[optind]));
	else if (strcmp(cmd, "consume") == 0 && optind + 1 < argc)
	{
		const char *name = argv[optind];
		FILE	   *f = fopen(argv[optind + 1], "w");
		int			idle_ms = optind + 2 < argc ? atoi(argv[optind + 2]) : 2000;
		long		want = queue_count(name);
		long		n = 0;

		if (f == NULL)
		{
			perror(argv[optind + 1]);
			return 1;
		}
		amqp_basic_consume(conn, 1, amqp_cstring_bytes(name), amqp_empty_bytes, 0, 1, 0,
						   amqp_empty_table);
		die_reply(amqp_get_rpc_reply(conn), "basic.consume");
		while (n < want)
		{
			amqp_envelope_t env;
			struct timeval tv = {idle_ms / 1000, (idle_ms % 1000) * 1000};
			amqp_rpc_reply_t r;

			amqp_maybe_release_buffers(conn);
			r = amqp_consume_message(conn, &env, &tv, 0);
			if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
				break;
			die_reply(r, "basic.consume");
			write_message(f, &env);
			amqp_destroy_envelope(&env);
			n++;
		}
		fclose(f);
		printf("%ld\n", n);
	}
	else
	{
		fprintf(stderr, "amqp_tool: unknown command or missing arguments: %s\n", cmd);
		return 2;
	}
	amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
	return 0;
}
