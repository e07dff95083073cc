/*-------------------------------------------------------------------------
 *
 * txoutbox.h
 *	  Module entry (txoutbox.c): what every SQL-callable function checks
 *	  first.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_H
#define TXOUTBOX_H

extern void txoutbox_require_preload(void);

#endif							/* TXOUTBOX_H */
