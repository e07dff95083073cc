/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  txoutbox's settings (GUCs, defined in settings.c) and the limits that
 *	  go with them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_SETTINGS_H
#define TXOUTBOX_SETTINGS_H

#define TXOUTBOX_MAX_WORKERS		32
#define TXOUTBOX_MAX_CLAIM			10000	/* batch_size, claim()'s max_messages */
#define TXOUTBOX_MAX_TOPIC_LEN		255
#define TXOUTBOX_MAX_KEY_BYTES		1024	/* message_key and idempotency_key
											 * are indexed */
#define TXOUTBOX_ERROR_LEN			512 /* last_error kept in shared memory */

extern char *txoutbox_database;
extern int	txoutbox_workers;
extern int	txoutbox_max_databases;
extern int	txoutbox_batch_size;
extern int	txoutbox_poll_interval_ms;
extern int	txoutbox_lock_timeout_ms;
extern int	txoutbox_max_attempts;
extern int	txoutbox_retry_base_delay_ms;
extern int	txoutbox_retry_max_delay_ms;
extern int	txoutbox_retention_ms;
extern int	txoutbox_http_max_concurrency;
extern int	txoutbox_http_timeout_ms;
extern int	txoutbox_breaker_failures;
extern int	txoutbox_breaker_cooldown_ms;
extern int	txoutbox_breaker_max_cooldown_ms;
extern char *txoutbox_http_allowed_hosts;
extern char *txoutbox_tenant_id;
extern char *txoutbox_fault_injection;
extern char *txoutbox_traceparent;
extern char *txoutbox_tracestate;
extern char *txoutbox_cloudevents_source;

extern void settings_define(void);
extern bool settings_next_database(const char **p, char *name);
extern bool settings_all_databases(void);
extern bool settings_database_listed(const char *dbname);
extern const char *settings_bound_tenant(void);
extern void settings_inject_fault(const char *point);

#endif							/* TXOUTBOX_SETTINGS_H */
