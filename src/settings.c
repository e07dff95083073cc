/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  The settings of SPEC.md (txoutbox.*), each with the context its use
 *	  calls for: what the postmaster or the workers read at start or reload
 *	  is PGC_SIGHUP, what a session may tune for its own calls PGC_USERSET,
 *	  and what decides where messages may go or whose they are PGC_SUSET.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"
#include "utils/memutils.h"

#include "settings.h"
#include "trace_context.h"

char	   *txoutbox_database = NULL;
int			txoutbox_workers = 1;
int			txoutbox_max_databases = 64;
int			txoutbox_batch_size = 500;
int			txoutbox_poll_interval_ms = 1000;
int			txoutbox_lock_timeout_ms = 60000;
int			txoutbox_max_attempts = 10;
int			txoutbox_retry_base_delay_ms = 1000;
int			txoutbox_retry_max_delay_ms = 600000;
int			txoutbox_retention_ms = 7 * 24 * 3600 * 1000;
int			txoutbox_http_max_concurrency = 32;
int			txoutbox_http_timeout_ms = 5000;
int			txoutbox_breaker_failures = 5;
int			txoutbox_breaker_cooldown_ms = 1000;
int			txoutbox_breaker_max_cooldown_ms = 60000;
char	   *txoutbox_http_allowed_hosts = NULL;
char	   *txoutbox_tenant_id = NULL;
char	   *txoutbox_fault_injection = NULL;
char	   *txoutbox_traceparent = NULL;
char	   *txoutbox_tracestate = NULL;
char	   *txoutbox_cloudevents_source = NULL;

/* txoutbox.traceparent: empty, or a W3C traceparent. */
static bool
check_traceparent(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	problem = trace_traceparent_problem(*newval, strlen(*newval));
	if (problem == NULL)
		return true;
	GUC_check_errdetail("%s", problem);
	return false;
}

/* txoutbox.tracestate: empty, or a W3C tracestate. */
static bool
check_tracestate(char **newval, void **extra, GucSource source)
{
	const char *problem;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	problem = trace_tracestate_problem(*newval, strlen(*newval));
	if (problem == NULL)
		return true;
	GUC_check_errdetail("%s", problem);
	return false;
}

/*
 * The next name of a txoutbox.database list (one name, or names separated
 * by commas), from *p on: copied into name with the blanks around it
 * trimmed (an empty name is a name: the check refuses it), *p moved past
 * it, NULL after the last.  Returns false when *p is NULL.
 */
bool
settings_next_database(const char **p, char *name)
{
	const char *s = *p;
	const char *end;
	size_t		len;

	if (s == NULL)
		return false;
	while (*s == ' ' || *s == '\t')
		s++;
	end = strchr(s, ',');
	*p = end ? end + 1 : NULL;
	len = end ? end - s : strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	len = Min(len, NAMEDATALEN - 1);
	memcpy(name, s, len);
	name[len] = '\0';
	return true;
}

/* Does txoutbox.database say "*" (every database with the extension)? */
bool
settings_all_databases(void)
{
	return txoutbox_database != NULL && strcmp(txoutbox_database, "*") == 0;
}

/* Does txoutbox.database name dbname (not counting "*")? */
bool
settings_database_listed(const char *dbname)
{
	const char *p = txoutbox_database;
	char		name[NAMEDATALEN];

	if (settings_all_databases())
		return false;
	while (settings_next_database(&p, name))
		if (strcmp(name, dbname) == 0)
			return true;
	return false;
}

/* txoutbox.database: "*", one name, or a list of names with none empty. */
static bool
check_database(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;
	char		name[NAMEDATALEN];

	if (p == NULL || p[0] == '\0')
	{
		GUC_check_errdetail("Give a database name, a comma-separated list of them, or \"*\".");
		return false;
	}
	if (strcmp(p, "*") == 0)
		return true;
	while (settings_next_database(&p, name))
	{
		if (name[0] == '\0')
		{
			GUC_check_errdetail("The list of databases has an empty name.");
			return false;
		}
		if (strchr(name, '*') != NULL)
		{
			GUC_check_errdetail("\"*\" stands alone: it means every database with the extension.");
			return false;
		}
	}
	return true;
}

/* The GUCs of SPEC.md, each with the context its use calls for. */
void
settings_define(void)
{
	DefineCustomStringVariable("txoutbox.database",
							   "Databases whose outboxes the background workers serve.",
							   "A name, a comma-separated list of names, or * for every database where the extension is installed.",
							   &txoutbox_database, "postgres",
							   PGC_SIGHUP, 0, check_database, NULL, NULL);
	DefineCustomIntVariable("txoutbox.workers",
							"Number of dispatcher background workers per database (0 disables them).",
							NULL, &txoutbox_workers, 1, 0, TXOUTBOX_MAX_WORKERS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.max_databases",
							"Most databases served at once (shared memory is reserved for them at start).",
							NULL, &txoutbox_max_databases, 64, 1, 1024,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.batch_size",
							"Messages a dispatcher claims per round.",
							NULL, &txoutbox_batch_size, 500, 1, TXOUTBOX_MAX_CLAIM,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.poll_interval",
							"Longest a dispatcher sleeps without being woken by a commit.",
							NULL, &txoutbox_poll_interval_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.lock_timeout",
							"Lease of a claim: how long a claimed message stays with its consumer.",
							NULL, &txoutbox_lock_timeout_ms, 60000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.max_attempts",
							"Default number of attempts before a message is failed.",
							NULL, &txoutbox_max_attempts, 10, 1, 1000000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.retry_base_delay",
							"Delay before the first retry; doubled on each further attempt.",
							NULL, &txoutbox_retry_base_delay_ms, 1000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.retry_max_delay",
							"Longest delay between two attempts.",
							NULL, &txoutbox_retry_max_delay_ms, 600000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.retention",
							"Succeeded messages older than this are purged by the worker; 0 keeps them.",
							NULL, &txoutbox_retention_ms, 7 * 24 * 3600 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.http_max_concurrency",
							"Most webhook requests a dispatcher has in flight at once.",
							NULL, &txoutbox_http_max_concurrency, 32, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.http_timeout",
							"Default timeout of a webhook request.",
							NULL, &txoutbox_http_timeout_ms, 5000, 1, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.breaker_failures",
							"Consecutive endpoint failures that open a network route's circuit breaker (0 turns it off).",
							NULL, &txoutbox_breaker_failures, 5, 0, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.breaker_cooldown",
							"How long an open circuit breaker waits before its first probe.",
							NULL, &txoutbox_breaker_cooldown_ms, 1000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("txoutbox.breaker_max_cooldown",
							"Longest wait between two probes of an open circuit breaker (the wait doubles while probes fail).",
							NULL, &txoutbox_breaker_max_cooldown_ms, 60000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("txoutbox.http_allowed_hosts",
							   "Comma-separated host names webhook routes may point to; empty allows any.",
							   NULL, &txoutbox_http_allowed_hosts, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("txoutbox.cloudevents_source",
							   "The source attribute of the CloudEvents routes with \"body\": \"cloudevents\" send; empty: /txoutbox/<database>.",
							   NULL, &txoutbox_cloudevents_source, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("txoutbox.traceparent",
							   "W3C traceparent that enqueue() stores with the messages it makes (unless their headers have one); usually SET LOCAL.",
							   NULL, &txoutbox_traceparent, "",
							   PGC_USERSET, GUC_NOT_IN_SAMPLE, check_traceparent, NULL, NULL);
	DefineCustomStringVariable("txoutbox.tracestate",
							   "W3C tracestate stored with txoutbox.traceparent.",
							   NULL, &txoutbox_tracestate, "",
							   PGC_USERSET, GUC_NOT_IN_SAMPLE, check_tracestate, NULL, NULL);

	DefineCustomStringVariable("txoutbox.tenant_id",
							   "Tenant the session is bound to: its txoutbox calls see and act on that tenant's messages only.",
							   "Set per role by an administrator (ALTER ROLE ... SET txoutbox.tenant_id); only superusers, or roles granted SET on it, can change it.",
							   &txoutbox_tenant_id, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);

	/* for the tests only: not shown, not in the sample file */
	DefineCustomStringVariable("txoutbox.fault_injection",
							   "Test hook: an ERROR is raised at the named point (network_completion, ordered_second_wave).",
							   NULL, &txoutbox_fault_injection, "",
							   PGC_SUSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("txoutbox");
}

/*
 * ERROR when the test hook txoutbox.fault_injection names point: the tests
 * use it to raise an error where none can be provoked from outside.
 */
void
settings_inject_fault(const char *point)
{
	if (txoutbox_fault_injection != NULL && strcmp(txoutbox_fault_injection, point) == 0)
		elog(ERROR, "txoutbox: fault injected at %s", point);
}

/* The tenant this session is bound to (txoutbox.tenant_id), or NULL. */
const char *
settings_bound_tenant(void)
{
	if (txoutbox_tenant_id == NULL || txoutbox_tenant_id[0] == '\0')
		return NULL;
	return txoutbox_tenant_id;
}
