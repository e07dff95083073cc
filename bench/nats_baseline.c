/*
 * nats_baseline.c: the baseline of bench/nats.sh, a plain libnats client
 * publishing what txoutbox publishes, the way txoutbox publishes it:
 * JetStream asynchronous publishes with a PubAck handler, at most
 * MAX_IN_FLIGHT awaiting their PubAck, each with a Nats-Msg-Id (a fresh
 * uuid-shaped id), the same headers (Content-Type, Txoutbox-Topic,
 * Txoutbox-Attempt) and the same body, MaxWait 5000 ms.  It stops when the
 * last PubAck is in and prints the rate.
 *
 *   nats_baseline URL stream-create STREAM SUBJECT      (recreate, file storage)
 *   nats_baseline URL stream-purge STREAM
 *   nats_baseline URL stream-count STREAM
 *   nats_baseline URL publish SUBJECT N MAX_IN_FLIGHT BODY
 *
 * Build: cc -O2 -o nats_baseline nats_baseline.c -lnats -lpthread
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int	in_flight = 0;
static int	acked = 0;
static int	failed = 0;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *what, natsStatus s)
{
	fprintf(stderr, "%s: %s (%s)\n", what, natsStatus_GetText(s), nats_GetLastError(NULL));
	exit(1);
}

/* PubAck handler (a library thread): count, and let the publisher go on. */
static void
on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	natsMsg_Destroy(msg);
	pthread_mutex_lock(&lock);
	if (pa)
		acked++;
	else
		failed++;
	in_flight--;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
}

int
main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	jsCtx	   *js = NULL;
	jsOptions	jo;
	jsErrCode	jerr = 0;
	natsStatus	s;
	const char *cmd;

	if (argc < 4)
	{
		fprintf(stderr, "usage: see the file header\n");
		return 2;
	}
	cmd = argv[2];
	if ((s = nats_Open(-1)) != NATS_OK)
		die("nats_Open", s);
	natsOptions_Create(&o);
	natsOptions_SetURL(o, argv[1]);
	natsOptions_SetIOBufSize(o, 256 * 1024);	/* as txoutbox */
	if ((s = natsConnection_Connect(&nc, o)) != NATS_OK)
		die("connect", s);
	jsOptions_Init(&jo);
	jo.PublishAsync.AckHandler = on_ack;
	jo.PublishAsync.MaxPending = 0;
	if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
		die("JetStream", s);

	if (strcmp(cmd, "stream-create") == 0 && argc == 5)
	{
		jsStreamConfig sc;
		jsStreamInfo *si = NULL;
		const char *subjects[1] = {argv[4]};

		js_DeleteStream(js, argv[3], NULL, &jerr);
		jsStreamConfig_Init(&sc);
		sc.Name = argv[3];
		sc.Subjects = subjects;
		sc.SubjectsLen = 1;
		sc.Storage = js_FileStorage;
		if ((s = js_AddStream(&si, js, &sc, NULL, &jerr)) != NATS_OK)
			die("js_AddStream", s);
		jsStreamInfo_Destroy(si);
	}
	else if (strcmp(cmd, "stream-purge") == 0)
	{
		if ((s = js_PurgeStream(js, argv[3], NULL, &jerr)) != NATS_OK)
			die("js_PurgeStream", s);
	}
	else if (strcmp(cmd, "stream-count") == 0)
	{
		jsStreamInfo *si = NULL;

		if ((s = js_GetStreamInfo(&si, js, argv[3], NULL, &jerr)) != NATS_OK)
			die("js_GetStreamInfo", s);
		printf("%" PRIu64 "\n", si->State.Msgs);
		jsStreamInfo_Destroy(si);
	}
	else if (strcmp(cmd, "publish") == 0 && argc == 7)
	{
		const char *subject = argv[3];
		int			n = atoi(argv[4]);
		int			window = atoi(argv[5]);
		const char *body = argv[6];
		int			len = (int) strlen(body);
		unsigned	seed = (unsigned) time(NULL) ^ (unsigned) getpid();
		double		t0 = now_s();
		double		t1;
		int			i;

		for (i = 0; i < n; i++)
		{
			natsMsg    *m = NULL;
			jsPubOptions po;
			char		id[37];

			pthread_mutex_lock(&lock);
			while (in_flight >= window)
				pthread_cond_wait(&cond, &lock);
			in_flight++;
			pthread_mutex_unlock(&lock);

			/* an id shaped like txoutbox's (a uuid), unique per run */
			snprintf(id, sizeof(id), "%08x-%04x-7%03x-8%03x-%012x", seed, (unsigned) (i >> 16) & 0xffff,
					 (unsigned) i & 0xfff, (unsigned) (i >> 12) & 0xfff, (unsigned) i);
			if ((s = natsMsg_Create(&m, subject, NULL, body, len)) != NATS_OK ||
				(s = natsMsgHeader_Set(m, "Content-Type", "application/json")) != NATS_OK ||
				(s = natsMsgHeader_Set(m, "Txoutbox-Topic", subject)) != NATS_OK ||
				(s = natsMsgHeader_Set(m, "Txoutbox-Attempt", "1")) != NATS_OK)
				die("natsMsg_Create", s);
			jsPubOptions_Init(&po);
			po.MsgId = id;
			po.MaxWait = 5000;
			if ((s = js_PublishMsgAsync(js, &m, &po)) != NATS_OK)
				die("js_PublishMsgAsync", s);
		}
		pthread_mutex_lock(&lock);
		while (in_flight > 0)
			pthread_cond_wait(&cond, &lock);
		pthread_mutex_unlock(&lock);
		t1 = now_s();
		printf("%.0f %d %d\n", n / (t1 - t0), acked, failed);
	}
	else
	{
		fprintf(stderr, "unknown command %s\n", cmd);
		return 2;
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	nats_CloseAndWait(2000);
	return 0;
}
