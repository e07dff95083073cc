-- core_enqueue: CREATE EXTENSION, enqueue() with every argument, and the
-- UUIDv7 ids.  Nothing here prints an id or a timestamp: they are compared.
-- (In the upgrade pass the extension exists already, updated from 0.1.0.)
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never

-- The functions of SPEC.md exist in schema txoutbox, with the parameter
-- names of the contract.
SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'txoutbox'::regnamespace
   AND p.proname IN ('enqueue', 'claim', 'mark_succeeded', 'mark_failed', 'get', 'list',
                     'replay', 'purge', 'dispatch', 'add_route', 'remove_route', 'worker_status')
 ORDER BY p.proname;
SELECT c.relname, c.relkind FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'txoutbox'::regnamespace AND c.relname IN ('messages', 'routes', 'stats')
 ORDER BY c.relname;
SELECT attname, format_type(atttypid, atttypmod) AS type, attnotnull
  FROM pg_catalog.pg_attribute
 WHERE attrelid = 'txoutbox.messages'::regclass AND attnum > 0 AND NOT attisdropped
 ORDER BY attnum;

-- Minimal call: defaults everywhere.  created_at and updated_at are the
-- transaction's now(), available_at the time of the insert (not earlier);
-- max_attempts is txoutbox.max_attempts.
SHOW txoutbox.max_attempts;
SELECT topic, payload, message_key, headers, correlation_id, tenant_id, org_id,
       status, attempt_count, max_attempts, last_error, locked_at, locked_by,
       published_at,
       available_at BETWEEN now() AND clock_timestamp() AS available_now,
       created_at = now() AS created_now,
       updated_at = now() AS updated_now
  FROM txoutbox.enqueue('orders.created', '{"order": 1}');

-- Every argument, in named notation.
SELECT topic, payload, message_key, headers, correlation_id, tenant_id, org_id,
       status, attempt_count, max_attempts,
       available_at = now() + interval '1 hour' AS delayed_one_hour,
       created_at = now() AS created_now
  FROM txoutbox.enqueue(topic => 'orders.shipped',
                        payload => '{"order": 2, "items": [1, 2]}',
                        message_key => 'order-2',
                        headers => '{"x-source": "shop", "x-trace": "abc"}',
                        correlation_id => 'corr-2',
                        tenant_id => 'tenant-a',
                        org_id => 'org-1',
                        available_at => now() + interval '1 hour',
                        max_attempts => 5);

-- Positional notation, and an available_at in the past.
SELECT topic, message_key, headers, correlation_id, tenant_id, org_id, max_attempts,
       available_at = '2020-01-01 00:00:00+00' AS available_in_past
  FROM txoutbox.enqueue('orders.paid', '"just a string"', 'k3', '{}', 'c3', 't3', 'o3',
                        '2020-01-01 00:00:00+00', 1);

-- Payload may be any JSON value; headers NULL means no headers.
SELECT payload, headers FROM txoutbox.enqueue('t.scalar', 'null');
SELECT payload, headers FROM txoutbox.enqueue('t.array', '[1, "two", {"three": 3}]', headers => NULL);

-- The default max_attempts follows the setting.
SET txoutbox.max_attempts = 3;
SELECT max_attempts FROM txoutbox.enqueue('t.setting', '{}');
RESET txoutbox.max_attempts;
SELECT max_attempts FROM txoutbox.enqueue('t.setting', '{}');

-- A topic is 1 to 255 characters (characters, not bytes).
SELECT length(topic) FROM txoutbox.enqueue(repeat('t', 255), '{}');
SELECT length(topic), octet_length(topic) FROM txoutbox.enqueue(repeat('é', 255), '{}');
SELECT length(topic) FROM txoutbox.enqueue('x', '{}');

-- What enqueue returned is what is in the table.
SELECT e.id AS k9_id, e::text AS k9_row
  FROM txoutbox.enqueue('orders.created', '{"order": 9}', message_key => 'k9') e \gset
SELECT m::text = :'k9_row' AS stored_as_returned
  FROM txoutbox.messages m WHERE m.id = :'k9_id';
SELECT count(*) AS messages, count(*) FILTER (WHERE status = 'pending') AS pending
  FROM txoutbox.messages;

-- enqueue is transactional: a rolled-back enqueue leaves nothing.
BEGIN;
SELECT topic FROM txoutbox.enqueue('rolled.back', '{}');
SELECT count(*) FROM txoutbox.messages WHERE topic = 'rolled.back';
ROLLBACK;
SELECT count(*) FROM txoutbox.messages WHERE topic = 'rolled.back';

-- Ids: UUID version 7 (version nibble 7, RFC variant), carrying the current
-- Unix time in milliseconds, and strictly increasing within a session, both
-- from enqueue() and from uuid_v7().
TRUNCATE txoutbox.messages;
SELECT count(*) FROM generate_series(1, 2000) g,
       LATERAL txoutbox.enqueue('ids', pg_catalog.to_jsonb(g)) e;
SELECT bool_and(substr(id::text, 15, 1) = '7') AS version_7,
       bool_and(substr(id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS rfc_variant,
       count(DISTINCT id) AS distinct_ids
  FROM txoutbox.messages;
-- ordering by id is ordering by creation
SELECT bool_and(n = rn) AS id_order_is_creation_order
  FROM (SELECT (payload)::int AS n, row_number() OVER (ORDER BY id) AS rn
          FROM txoutbox.messages) s;
-- the 48-bit timestamp is the time the id was made
SELECT bool_and(abs(('x' || lpad(replace(left(id::text, 13), '-', ''), 16, '0'))::bit(64)::bigint
                    - (extract(epoch FROM created_at) * 1000)::bigint) < 60000) AS timestamp_is_now
  FROM txoutbox.messages;
SELECT bool_and(a < b) AS strictly_increasing, count(*) AS pairs
  FROM (SELECT u AS a, lead(u) OVER (ORDER BY n) AS b
          FROM (SELECT n, txoutbox.uuid_v7() AS u FROM generate_series(1, 20000) n) s) p
 WHERE b IS NOT NULL;
SELECT substr(txoutbox.uuid_v7()::text, 15, 1) AS version;
-- uuid_v7_floor(ts) is below every id made at or after ts, above ids made before
SELECT bool_and(txoutbox.uuid_v7_floor(now() - interval '1 minute') < id) AS floor_below,
       bool_and(txoutbox.uuid_v7_floor(now() + interval '1 minute') > id) AS floor_above
  FROM txoutbox.messages;
SELECT txoutbox.uuid_v7_floor('1970-01-01 00:00:00+00') = '00000000-0000-0000-0000-000000000000' AS epoch_floor;
SELECT txoutbox.uuid_v7_floor('infinity');
\echo :LAST_ERROR_SQLSTATE
TRUNCATE txoutbox.messages;

-- The extension is versioned: ALTER EXTENSION ... UPDATE works (nothing to
-- do: the default version is installed) and the installed version is known.
ALTER EXTENSION txoutbox UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'txoutbox';
