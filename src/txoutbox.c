/*-------------------------------------------------------------------------
 *
 * txoutbox.c
 *	  Module entry point: defines the settings everywhere the library is
 *	  loaded; under shared_preload_libraries also reserves shared memory and
 *	  registers the launcher.  The rest lives in one file per responsibility
 *	  (README.md, "Layout").
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "ddl_watch.h"
#include "settings.h"
#include "shmem.h"
#include "txoutbox.h"
#include "worker.h"

PG_MODULE_MAGIC;

static bool txoutbox_preloaded = false;

void		_PG_init(void);

/*
 * Module load: define the settings everywhere; reserve shared memory and
 * register the launcher only when loaded by shared_preload_libraries.
 */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	settings_define();

	if (!process_shared_preload_libraries_in_progress)
		return;

	txoutbox_preloaded = true;
	shmem_install_hooks();
	ddl_watch_install();
	launcher_register();
}

/*
 * Refuse SQL use of the C functions when the library was not preloaded: the
 * dispatcher would never run and wake-ups would go nowhere.
 */
void
txoutbox_require_preload(void)
{
	if (!txoutbox_preloaded || txoutbox_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("txoutbox must be loaded via shared_preload_libraries"),
				 errhint("Add txoutbox to shared_preload_libraries in postgresql.conf and restart the server.")));
}
