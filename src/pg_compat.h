/*-------------------------------------------------------------------------
 *
 * pg_compat.h
 *	  The differences between the PostgreSQL releases txoutbox supports
 *	  (15, 16, 17 and 18), one shim per changed API, each named after what
 *	  it does and saying which release changed what.  Logic files use these
 *	  names and never test PG_VERSION_NUM themselves.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_PG_COMPAT_H
#define TXOUTBOX_PG_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "txoutbox supports PostgreSQL 15, 16, 17 and 18; this server's headers are older than 15"
#endif

#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/regproc.h"

/*
 * A function that never returns, written before the declaration.  18
 * replaced the trailing pg_attribute_noreturn() with a leading pg_noreturn
 * (C11 _Noreturn).
 */
#ifndef pg_noreturn
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * Insert the index entries of the tuple just stored in slot (no update, no
 * speculative insertion).  16 added the onlySummarizing argument (HOT
 * updates that change only summarizing indexes); an insert touches every
 * index, so it is false.
 */
#if PG_VERSION_NUM >= 160000
#define compat_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#else
#define compat_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#endif

/*
 * The same for a speculative insertion (INSERT ... ON CONFLICT's
 * protocol): a conflict in one of arbiters is reported in *conflict
 * instead of raised.  Same 16 change.
 */
#if PG_VERSION_NUM >= 160000
#define compat_insert_index_tuples_speculative(rri, slot, estate, conflict, arbiters) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, true, (conflict), (arbiters), false)
#else
#define compat_insert_index_tuples_speculative(rri, slot, estate, conflict, arbiters) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, true, (conflict), (arbiters))
#endif

/*
 * Look in the arbiter indexes for a tuple the one in slot would conflict
 * with (its TID into *conflict_tid), waiting for the transactions that are
 * writing one.  18 added tupleid (a tuple not to count, for logical
 * replication's conflict checks of an update; NULL for an insert).
 */
#if PG_VERSION_NUM >= 180000
#define compat_check_index_constraints(rri, slot, estate, conflict_tid, arbiters) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflict_tid), NULL, (arbiters))
#else
#define compat_check_index_constraints(rri, slot, estate, conflict_tid, arbiters) \
	ExecCheckIndexConstraints((rri), (slot), (estate), (conflict_tid), (arbiters))
#endif

/*
 * The local copy of backend status entry number i (1-based, up to
 * pgstat_fetch_stat_numbackends()).  16 renamed
 * pgstat_fetch_stat_local_beentry to pgstat_get_local_beentry_by_index
 * (same array, same 1-based index, same backend_xid/backend_xmin fields;
 * 17 added proc_number and the subtransaction fields beside them).
 */
#if PG_VERSION_NUM >= 160000
#define compat_local_beentry(i) pgstat_get_local_beentry_by_index(i)
#else
#define compat_local_beentry(i) pgstat_fetch_stat_local_beentry(i)
#endif

/*
 * A dotted name split into a List of String.  16 added the soft-error
 * context argument (NULL: throw as before).
 */
#if PG_VERSION_NUM >= 160000
#define compat_qualified_name_list(s) stringToQualifiedNameList((s), NULL)
#else
#define compat_qualified_name_list(s) stringToQualifiedNameList(s)
#endif

/*
 * Is this process a background worker?  17 removed the IsBackgroundWorker
 * global in favour of the backend type (AmBackgroundWorkerProcess()).
 */
#if PG_VERSION_NUM >= 170000
#define compat_am_background_worker() AmBackgroundWorkerProcess()
#else
#define compat_am_background_worker() IsBackgroundWorker
#endif

/*
 * Pin search_path to "pg_catalog, pg_temp" at the current GUC nest level
 * (GUC_ACTION_SAVE: undone by the AtEOXact_GUC of that level), before
 * running user code on someone else's behalf.  17 added RestrictSearchPath()
 * for this (VACUUM, ANALYZE, CREATE INDEX and REFRESH MATERIALIZED VIEW use
 * it); on 15 and 16 we set the same value the same way.
 */
#if PG_VERSION_NUM >= 170000
#define compat_restrict_search_path() RestrictSearchPath()
#else
#define compat_restrict_search_path() \
	((void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, \
							  PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false))
#endif

/*
 * Base64 of binary data.  18 typed the binary side of pg_b64_encode and
 * pg_b64_decode as uint8 (char before); a void pointer converts to both.
 */
#define compat_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const void *) (src), (len), (dst), (dstlen))
#define compat_b64_decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (void *) (dst), (dstlen))

/*
 * A WaitEventSet that lives as long as the process.  17 made its owner a
 * resource owner (NULL: none, allocated in TopMemoryContext) instead of a
 * memory context.
 */
#if PG_VERSION_NUM >= 170000
#define compat_create_wait_event_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define compat_create_wait_event_set(nevents) CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * Does role own database dboid?  16 replaced the per-catalog ownercheck
 * functions (pg_database_ownercheck) with object_ownercheck.
 */
#if PG_VERSION_NUM >= 160000
#define compat_database_ownercheck(dboid, role) object_ownercheck(DatabaseRelationId, (dboid), (role))
#else
#define compat_database_ownercheck(dboid, role) pg_database_ownercheck((dboid), (role))
#endif

/*
 * Is this pg_database row an interrupted DROP DATABASE's?  Minor releases
 * of every supported branch (15.4, 16.0) mark it with datconnlimit -2 and
 * added database_is_invalid_form() for the test; the test itself, so that
 * a build against newer 15 headers also loads on 15.0-15.3.
 */
#define compat_database_is_invalid(form) ((form)->datconnlimit == -2)

#endif							/* TXOUTBOX_PG_COMPAT_H */
