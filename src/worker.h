/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The background workers: the launcher (launcher.c) and the
 *	  dispatchers it starts (dispatcher.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_WORKER_H
#define TXOUTBOX_WORKER_H

#include "fmgr.h"
#include "postgres_ext.h"

/* entry points, looked up by name by the postmaster */
extern PGDLLEXPORT void txoutbox_launcher_main(Datum main_arg);
extern PGDLLEXPORT void txoutbox_dispatcher_main(Datum main_arg);

extern void launcher_register(void);
extern bool worker_database_busy(Oid dboid);

#endif							/* TXOUTBOX_WORKER_H */
