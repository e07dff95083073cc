/*-------------------------------------------------------------------------
 *
 * trace_context.c
 *	  W3C Trace Context (https://www.w3.org/TR/trace-context/): the checks
 *	  of a traceparent and a tracestate, as enqueue() stores them with a
 *	  message (from its headers, or from the settings txoutbox.traceparent
 *	  and txoutbox.tracestate) and the publishers send them on.
 *
 * traceparent: version "-" trace-id "-" parent-id "-" flags, lowercase
 * hex of 2, 32, 16 and 2 digits; version ff is invalid, an all-zero
 * trace-id or parent-id too.  Version 00 is exactly 55 characters; a later
 * version may go on after a "-" (the fields it adds), as the
 * recommendation says a receiver must accept.
 *
 * tracestate: up to 32 comma-separated list members key=value (spaces or
 * tabs around the commas), at most 512 characters in all.  A key is
 * lowercase letters, digits and _-* / starting with a letter (at most 256),
 * or tenant@system (241 and 14); a value is 1 to 256 printable ASCII
 * characters but "," and "=", not ending in a space.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "trace_context.h"

#define TRACEPARENT_V00_LEN	55
#define TRACESTATE_MAX_MEMBERS	32

/* Are s[0..n-1] lowercase hex digits, and (when nonzero) not all zero? */
static bool
lower_hex(const char *s, int n, bool nonzero)
{
	bool		any = false;

	for (int i = 0; i < n; i++)
	{
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
		if (s[i] != '0')
			any = true;
	}
	return any || !nonzero;
}

/*
 * Why value (len bytes) is not a W3C traceparent, or NULL when it is one.
 * The reason is a sentence fragment for an errdetail.
 */
const char *
trace_traceparent_problem(const char *value, int len)
{
	if (len < TRACEPARENT_V00_LEN || value[2] != '-' || value[35] != '-' || value[52] != '-')
		return "A traceparent is version-traceid-parentid-flags: 2, 32, 16 and 2 lowercase hex digits, such as 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.";
	if (!lower_hex(value, 2, false) || !lower_hex(value + 36, 16, false) ||
		!lower_hex(value + 3, 32, false) || !lower_hex(value + 53, 2, false))
		return "Its fields must be lowercase hex digits.";
	if (memcmp(value, "ff", 2) == 0)
		return "Version ff is not valid.";
	if (!lower_hex(value + 3, 32, true))
		return "Its trace-id is all zeros.";
	if (!lower_hex(value + 36, 16, true))
		return "Its parent-id is all zeros.";
	if (memcmp(value, "00", 2) == 0 && len != TRACEPARENT_V00_LEN)
		return "A version 00 traceparent is 55 characters long.";
	if (len > TRACEPARENT_V00_LEN && value[TRACEPARENT_V00_LEN] != '-')
		return "A later version's fields follow the flags after a \"-\".";
	return NULL;
}

/* A character of a tracestate key after its first (lcalpha, digit, _-* /). */
static bool
key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '-' || c == '*' || c == '/';
}

/* Is k[0..n-1] a tracestate key (simple, or tenant@system)? */
static bool
tracestate_key(const char *k, int n)
{
	const char *at = memchr(k, '@', n);

	if (at == NULL)
	{
		if (n < 1 || n > 256 || !(k[0] >= 'a' && k[0] <= 'z'))
			return false;
		for (int i = 1; i < n; i++)
			if (!key_char(k[i]))
				return false;
		return true;
	}
	else
	{
		int			tenant = at - k;
		int			system = n - tenant - 1;

		if (tenant < 1 || tenant > 241 || system < 1 || system > 14 ||
			!((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= '0' && k[0] <= '9')) ||
			!(at[1] >= 'a' && at[1] <= 'z'))
			return false;
		for (int i = 1; i < tenant; i++)
			if (!key_char(k[i]))
				return false;
		for (int i = 2; i <= system; i++)
			if (!key_char(at[i]))
				return false;
		return true;
	}
}

/* Is v[0..n-1] a tracestate value? */
static bool
tracestate_value(const char *v, int n)
{
	if (n < 1 || n > 256 || v[n - 1] == ' ')
		return false;
	for (int i = 0; i < n; i++)
		if (v[i] < 0x20 || v[i] > 0x7e || v[i] == ',' || v[i] == '=')
			return false;
	return true;
}

/*
 * Why value (len bytes) is not a W3C tracestate, or NULL when it is one
 * (an errdetail sentence).
 */
const char *
trace_tracestate_problem(const char *value, int len)
{
	int			members = 0;
	int			i = 0;

	if (len > TRACESTATE_MAX_LEN)
		return "A tracestate is at most 512 characters long.";
	while (i < len)
	{
		int			start,
					end,
					eq;

		while (i < len && (value[i] == ' ' || value[i] == '\t'))
			i++;
		start = i;
		while (i < len && value[i] != ',')
			i++;
		end = i;
		while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
			end--;
		i++;					/* past the comma */
		if (end == start)
			continue;			/* an empty member is allowed */
		if (++members > TRACESTATE_MAX_MEMBERS)
			return "A tracestate has at most 32 list members.";
		for (eq = start; eq < end && value[eq] != '='; eq++)
			;
		if (eq == end)
			return "Each list member of a tracestate is key=value.";
		if (!tracestate_key(value + start, eq - start))
			return "A tracestate key is lowercase letters, digits and _-*/ starting with a letter, or tenant@system.";
		if (!tracestate_value(value + eq + 1, end - eq - 1))
			return "A tracestate value is 1 to 256 printable ASCII characters other than \",\" and \"=\".";
	}
	return NULL;
}
