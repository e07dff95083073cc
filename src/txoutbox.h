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

/* the extension version this library implements (txoutbox.control) */
#define TXOUTBOX_VERSION "0.2.0"

extern void txoutbox_require_preload(void);

#endif							/* TXOUTBOX_H */
