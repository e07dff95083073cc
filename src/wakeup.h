/*-------------------------------------------------------------------------
 *
 * wakeup.h
 *	  Waking the dispatchers when a transaction that made messages
 *	  claimable commits (wakeup.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_WAKEUP_H
#define TXOUTBOX_WAKEUP_H

extern void wakeup_at_commit(void);
extern void wakeup_rescan_at_commit(void);
extern void wakeup_dispatchers(void);

#endif							/* TXOUTBOX_WAKEUP_H */
