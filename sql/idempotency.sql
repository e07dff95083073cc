-- idempotency: enqueue(..., idempotency_key => k).  While a message with
-- that key is kept (until it is purged), an enqueue with the same topic,
-- tenant and key returns it and writes nothing; with another payload it is
-- an error (23505).  Also in one statement, in one transaction, through a
-- fan-out, and when the table makes enqueue run a real INSERT (a trigger).
-- (Two transactions at once: test/specs/idempotency_concurrent.spec.)
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
\set ECHO none
\i test/regress_helpers.sql
\set ECHO all

-- the first enqueue makes the message; the second returns it unchanged
SELECT id AS first_id, idempotency_key
  FROM txoutbox.enqueue('orders.created', '{"order": 42}', idempotency_key => 'order-42-created') \gset
SELECT :'idempotency_key' AS stored_key;
SELECT xmin AS first_xmin FROM txoutbox.messages WHERE id = :'first_id' \gset
SELECT e.id = :'first_id' AS same_message, e.status, e.payload
  FROM txoutbox.enqueue('orders.created', '{"order": 42}', idempotency_key => 'order-42-created') e;
SELECT count(*) AS messages, bool_and(xmin::text = :'first_xmin') AS not_written_again
  FROM txoutbox.messages;
-- the key is the message's whatever its state: claimed, succeeded
SELECT count(*) FROM txoutbox.claim('c1', 10, topic => 'orders.created');
SELECT e.id = :'first_id' AS same_message, e.status
  FROM txoutbox.enqueue('orders.created', '{"order": 42}', idempotency_key => 'order-42-created') e;
SELECT status FROM txoutbox.mark_succeeded(:'first_id');
SELECT e.id = :'first_id' AS same_message, e.status
  FROM txoutbox.enqueue('orders.created', '{"order": 42}', idempotency_key => 'order-42-created') e;

-- another payload with the key: an error, nothing written
SELECT pg_temp.try($$SELECT txoutbox.enqueue('orders.created', '{"order": 43}', idempotency_key => 'order-42-created')$$,
                   :'first_id');
SELECT count(*) AS messages FROM txoutbox.messages;
-- the payload compared is the JSON value (key order and spaces do not matter)
SELECT count(DISTINCT e.id) AS one_message
  FROM (VALUES ('{"a": 1, "b": [1, 2]}'::jsonb), ('{ "b":[1,2],"a":1 }'::jsonb)) v(p),
       txoutbox.enqueue('t.json', v.p, idempotency_key => 'j') e;

-- the scope: topic and tenant (a missing tenant is one scope too)
SELECT count(DISTINCT e.id) AS messages
  FROM (VALUES ('scope.a', NULL), ('scope.a', NULL), ('scope.b', NULL), ('scope.a', 'T1'),
               ('scope.a', 'T1'), ('scope.a', 'T2')) v(topic, tenant),
       txoutbox.enqueue(v.topic, '{}', tenant_id => v.tenant, idempotency_key => 'same') e;
SELECT topic, tenant_id, count(*) FROM txoutbox.messages WHERE topic LIKE 'scope.%' GROUP BY 1, 2 ORDER BY 1, 2;
-- without a key, nothing is deduplicated (each call is made: the calls'
-- arguments name g)
SELECT count(DISTINCT e.id) AS messages
  FROM generate_series(1, 3) g, txoutbox.enqueue('nokey', '{}', message_key => left(g::text, 0)) e;

-- one statement, one transaction
SELECT count(*) AS calls, count(DISTINCT e.id) AS messages
  FROM generate_series(1, 5) g, txoutbox.enqueue('stmt', '{}', idempotency_key => 's' || left(g::text, 0)) e;
BEGIN;
SELECT id AS tx_id FROM txoutbox.enqueue('tx', '{}', idempotency_key => 't') \gset
SELECT e.id = :'tx_id' AS same_message FROM txoutbox.enqueue('tx', '{}', idempotency_key => 't') e;
COMMIT;
-- a rolled-back enqueue leaves the key free
BEGIN;
SELECT count(*) FROM txoutbox.enqueue('rb', '{"v": 1}', idempotency_key => 'r');
ROLLBACK;
SELECT payload FROM txoutbox.enqueue('rb', '{"v": 2}', idempotency_key => 'r');
-- ... and so does a rolled-back subtransaction
BEGIN;
SAVEPOINT s;
SELECT count(*) FROM txoutbox.enqueue('rb.sub', '{"v": 1}', idempotency_key => 'r');
ROLLBACK TO SAVEPOINT s;
SELECT payload FROM txoutbox.enqueue('rb.sub', '{"v": 2}', idempotency_key => 'r');
COMMIT;

-- the window: as long as the message is kept; once purged, the key is free
UPDATE txoutbox.messages SET updated_at = now() - interval '2 days' WHERE id = :'first_id';
SELECT txoutbox.purge(interval '1 day') AS purged;
SELECT e.id <> :'first_id' AS a_new_message, e.payload
  FROM txoutbox.enqueue('orders.created', '{"order": 43}', idempotency_key => 'order-42-created') e;

-- bad keys
SELECT pg_temp.try($$SELECT txoutbox.enqueue('bad', '{}', idempotency_key => '')$$);
SELECT pg_temp.try(format('SELECT txoutbox.enqueue(%L, %L, idempotency_key => %L)', 'bad', '{}', repeat('k', 1025)));
SELECT count(*) AS keyed_at_1024 FROM txoutbox.enqueue('ok', '{}', idempotency_key => repeat('k', 1024));

-- fan-out: the first copy holds the key (the others carry it); the second
-- enqueue returns that copy and makes no new ones
SELECT id FROM txoutbox.add_route('fan.k', 'notify', '{"fanout": true}');
SELECT id FROM txoutbox.add_route('fan.k', 'notify', '{"fanout": true, "channel": "other"}');
SELECT id AS fan_id FROM txoutbox.enqueue('fan.k', '{}', idempotency_key => 'f') \gset
SELECT e.id = :'fan_id' AS same_message FROM txoutbox.enqueue('fan.k', '{}', idempotency_key => 'f') e;
SELECT route_id, idempotency_key, id = fanout_of AS holds_the_key
  FROM txoutbox.messages WHERE topic = 'fan.k' ORDER BY id;
TRUNCATE txoutbox.routes RESTART IDENTITY;

-- a table enqueue must run a real INSERT into (a trigger on it): the same
-- answers, through INSERT ... ON CONFLICT DO NOTHING
CREATE FUNCTION public.idem_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER idem_noop BEFORE INSERT ON txoutbox.messages FOR EACH ROW EXECUTE FUNCTION public.idem_noop();
SELECT id AS slow_id FROM txoutbox.enqueue('slow', '{"s": 1}', idempotency_key => 'x') \gset
SELECT e.id = :'slow_id' AS same_message FROM txoutbox.enqueue('slow', '{"s": 1}', idempotency_key => 'x') e;
SELECT count(*) AS calls, count(DISTINCT e.id) AS messages
  FROM generate_series(1, 3) g, txoutbox.enqueue('slow', '{"s": 1}', idempotency_key => 'x' || left(g::text, 0)) e;
SELECT pg_temp.try($$SELECT txoutbox.enqueue('slow', '{"s": 2}', idempotency_key => 'x')$$, :'slow_id');
SELECT count(*) AS slow_messages FROM txoutbox.messages WHERE topic = 'slow';
DROP TRIGGER idem_noop ON txoutbox.messages;
DROP FUNCTION public.idem_noop();

-- the index holds the first copies with a key, and nothing else
SELECT count(*) AS keyed_messages FROM txoutbox.messages
 WHERE idempotency_key IS NOT NULL AND (fanout_of IS NULL OR fanout_of = id);
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS via_the_index FROM txoutbox.messages
 WHERE topic = 'scope.a' AND idempotency_key = 'same' AND (fanout_of IS NULL OR fanout_of = id);
RESET enable_seqscan;
RESET enable_bitmapscan;

TRUNCATE txoutbox.messages;
