/*-------------------------------------------------------------------------
 *
 * ddl_watch.h
 *	  Tells the workers of commands that concern them (ddl_watch.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_DDL_WATCH_H
#define TXOUTBOX_DDL_WATCH_H

extern void ddl_watch_install(void);

#endif							/* TXOUTBOX_DDL_WATCH_H */
