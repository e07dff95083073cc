/*-------------------------------------------------------------------------
 *
 * trace_context.h
 *	  W3C Trace Context (traceparent, tracestate): checking the values an
 *	  application gives, in a message's headers or in the settings
 *	  txoutbox.traceparent / txoutbox.tracestate (trace_context.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TXOUTBOX_TRACE_CONTEXT_H
#define TXOUTBOX_TRACE_CONTEXT_H

#define TRACEPARENT_HEADER	"traceparent"
#define TRACESTATE_HEADER	"tracestate"
#define TRACESTATE_MAX_LEN	512		/* W3C: at least this much must be kept */

extern const char *trace_traceparent_problem(const char *value, int len);
extern const char *trace_tracestate_problem(const char *value, int len);

#endif							/* TXOUTBOX_TRACE_CONTEXT_H */
