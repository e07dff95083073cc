/*-------------------------------------------------------------------------
 *
 * message.c
 *	  Claimed rows of txoutbox.messages as OutboxMessage (message.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "message.h"
#include "uuidv7.h"

/*
 * The row type of txoutbox.messages, blessed for building composites, in
 * the current memory context.
 */
TupleDesc
message_rowdesc(void)
{
	Oid			nsp = get_namespace_oid("txoutbox", false);
	Oid			relid = get_relname_relid("messages", nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table txoutbox.messages does not exist")));
	return lookup_rowtype_tupdesc_copy(get_rel_type_id(relid), -1);
}

/*
 * Copy a locked row (tup, of tupdesc: the columns of MESSAGE_COLUMNS and
 * key_after, as outbox_lock_claimable returns them) into
 * a new OutboxMessage in the current memory context, as the claim makes it:
 * attempt counted, processing under stamp's consumer and lease (the row a
 * function publisher receives shows that state).  rowdesc: message_rowdesc().
 */
OutboxMessage *
message_copy_claimed(HeapTuple tup, TupleDesc tupdesc, TupleDesc rowdesc,
					 const ClaimStamp *stamp)
{
	OutboxMessage *m = palloc0(sizeof(OutboxMessage));
	Datum	   *values;
	bool	   *nulls;

	/* the row's columns, then key_after (outbox_lock_claimable) */
	if (tupdesc->natts != Natts_claimed || rowdesc->natts != Natts_messages)
		elog(ERROR, "txoutbox: a claimed row has %d columns, txoutbox.messages %d; %d expected",
			 tupdesc->natts - 1, rowdesc->natts, Natts_messages);
	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);
	heap_deform_tuple(tup, tupdesc, values, nulls);

#define COL(name) (Anum_messages_##name - 1)
#define TEXT_OR_NULL(name) (nulls[COL(name)] ? NULL : TextDatumGetCString(values[COL(name)]))
	memcpy(&m->id, DatumGetUUIDP(values[COL(id)]), sizeof(pg_uuid_t));
	uuid_to_cstring(&m->id, m->id_str);
	m->tenant_id = TEXT_OR_NULL(tenant_id);
	m->org_id = TEXT_OR_NULL(org_id);
	m->topic = TextDatumGetCString(values[COL(topic)]);
	m->message_key = TEXT_OR_NULL(message_key);
	m->payload = DatumGetJsonbPCopy(values[COL(payload)]);
	m->headers = DatumGetJsonbPCopy(values[COL(headers)]);
	m->correlation_id = TEXT_OR_NULL(correlation_id);
	m->attempt_count = DatumGetInt32(values[COL(attempt_count)]) + 1;
	m->max_attempts = DatumGetInt32(values[COL(max_attempts)]);
	m->created_at = DatumGetTimestampTz(values[COL(created_at)]);
	m->route_id = nulls[COL(route_id)] ? 0 : DatumGetInt64(values[COL(route_id)]);
	m->expires_at = nulls[COL(expires_at)] ? 0 : DatumGetTimestampTz(values[COL(expires_at)]);
	m->lease_until = stamp->lock_until;
	m->has_key_after = !nulls[Anum_claimed_key_after - 1];
	if (m->has_key_after)
		memcpy(&m->key_after, DatumGetUUIDP(values[Anum_claimed_key_after - 1]),
			   sizeof(pg_uuid_t));

	values[COL(status)] = CStringGetTextDatum("processing");
	values[COL(attempt_count)] = Int32GetDatum(m->attempt_count);
	values[COL(available_at)] = TimestampTzGetDatum(stamp->lock_until);
	values[COL(locked_at)] = TimestampTzGetDatum(stamp->as_of);
	nulls[COL(locked_at)] = false;
	values[COL(locked_by)] = CStringGetTextDatum(stamp->consumer);
	nulls[COL(locked_by)] = false;
	values[COL(updated_at)] = TimestampTzGetDatum(stamp->as_of);
#undef TEXT_OR_NULL
#undef COL
	m->row = heap_copy_tuple_as_datum(heap_form_tuple(rowdesc, values, nulls), rowdesc);
	return m;
}
