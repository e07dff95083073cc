-- fanout: routes with "fanout": true are subscriptions.  Every enabled
-- fan-out route that matches a topic gets a copy of each message enqueued on
-- it (a row of its own, bound to the route by route_id, sharing fanout_of),
-- and the topic's ordinary route (the most specific, as before) one more;
-- each copy has its own status, attempts, backoff, error and replay, and
-- per-key order holds per destination.  Without fan-out routes nothing
-- changes.  get, list, destinations and stats show each destination.
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

-- Publishers: a records what it gets, b fails, c records too.
CREATE TABLE public.fan_got (route text, message_key text, n int, attempt int);
CREATE FUNCTION public.fan_a(m txoutbox.messages) RETURNS void
LANGUAGE sql AS $$ INSERT INTO public.fan_got VALUES ('a', m.message_key, (m.payload ->> 'n')::int, m.attempt_count) $$;
CREATE FUNCTION public.fan_b(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'b is down'; END $$;
CREATE FUNCTION public.fan_c(m txoutbox.messages) RETURNS void
LANGUAGE sql AS $$ INSERT INTO public.fan_got VALUES ('c', m.message_key, (m.payload ->> 'n')::int, m.attempt_count) $$;
-- the copies of the message id is one of: route, status, attempts, head
CREATE FUNCTION pg_temp.copies(id uuid) RETURNS TABLE (route_id bigint, status text, attempt_count int, head boolean)
LANGUAGE sql AS $$
    SELECT d.route_id, d.status, d.attempt_count, d.id = d.fanout_of FROM txoutbox.destinations(id) d ORDER BY d.id
$$;
-- enqueue one message of topic; its copies' count and routes
CREATE FUNCTION pg_temp.fan_of(topic text) RETURNS TABLE (copies bigint, route_ids bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    i uuid;
BEGIN
    SELECT e.id INTO i FROM txoutbox.enqueue(topic, '{}') e;
    RETURN QUERY SELECT count(*), array_agg(d.route_id ORDER BY d.id) FROM txoutbox.destinations(i) d;
END
$$;

-- ---------------------------------------------------------------------------
-- Routes: "fanout" must be true or false; fan-out routes may share a pattern
-- (with each other and with an ordinary route), ordinary ones may not
-- ---------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT txoutbox.add_route('fan.*', 'notify', '{"fanout": "yes"}')$$);
SELECT id, topic_pattern, publisher FROM txoutbox.add_route('fan.*', 'notify', '{"channel": "txo_fan"}');
SELECT id, topic_pattern, publisher FROM txoutbox.add_route('fan.*', 'function', '{"fanout": true, "function": "public.fan_a"}');
SELECT id, topic_pattern, publisher FROM txoutbox.add_route('fan.order', 'function',
                                                            '{"fanout": true, "function": "public.fan_b", "max_attempts": 2}');
SELECT id, topic_pattern, publisher FROM txoutbox.add_route('fan.*', 'function', '{"fanout": true, "function": "public.fan_c"}');
SELECT pg_temp.try($$SELECT txoutbox.add_route('fan.*', 'notify')$$);
SELECT id, topic_pattern, publisher FROM txoutbox.add_route('sub.*', 'function', '{"fanout": true, "function": "public.fan_a"}');
-- route_for() is the topic's ordinary route: fan-out routes are not candidates
SELECT id, publisher FROM txoutbox.route_for('fan.order');
SELECT (txoutbox.route_for('sub.x')).id IS NULL AS no_ordinary_route;

-- ---------------------------------------------------------------------------
-- enqueue makes one row per destination; it returns the first (the topic
-- route's), whose id is every copy's fanout_of
-- ---------------------------------------------------------------------------
SELECT (e).id AS order_id, (e).route_id IS NULL AS topic_route, (e).id = (e).fanout_of AS head
  FROM (SELECT txoutbox.enqueue('fan.order', '{"n": 1}', message_key => 'k1', headers => '{"h": "v"}',
                                correlation_id => 'c1') AS e) s \gset
SELECT :'topic_route' AS returned_the_topic_routes_copy, :'head' AS returned_the_head;
SELECT * FROM pg_temp.copies(:'order_id');
-- the copies are alike but for id and route_id
SELECT count(*) AS copies, count(DISTINCT id) AS ids,
       count(DISTINCT (topic, payload, headers, message_key, correlation_id, created_at, available_at,
                       max_attempts, status)) AS otherwise_alike,
       bool_and(id >= fanout_of) AS ids_from_the_head_on
  FROM txoutbox.messages WHERE fanout_of = :'order_id';
-- a copy's destinations are its message's: from any copy
SELECT count(*) AS from_the_last_copy
  FROM txoutbox.destinations((SELECT id FROM txoutbox.messages WHERE fanout_of = :'order_id'
                               ORDER BY id DESC LIMIT 1));
-- fan.other: the ordinary route and the two fan.* subscriptions
SELECT (txoutbox.enqueue('fan.other', '{"n": 2}')).id AS other_id \gset
SELECT * FROM pg_temp.copies(:'other_id');
-- sub.x: no ordinary route matches: only the fan-out copy
SELECT (txoutbox.enqueue('sub.x', '{"n": 3}')).id AS sub_id \gset
SELECT * FROM pg_temp.copies(:'sub_id');
-- a topic no fan-out route matches: one message, as without fan-out
SELECT route_id, fanout_of FROM txoutbox.enqueue('plain', '{"n": 4}');
SELECT count(*) AS its_only_destination FROM txoutbox.destinations((SELECT id FROM txoutbox.messages WHERE topic = 'plain'));
SELECT pg_temp.try($$SELECT * FROM txoutbox.destinations('00000000-0000-0000-0000-000000000000')$$);
SELECT pg_temp.try($$SELECT * FROM txoutbox.destinations(NULL)$$);

-- stats: a row per topic, status and route
SELECT topic, status, messages, route_id, publisher, unrouted FROM txoutbox.stats ORDER BY topic, status, route_id;

-- ---------------------------------------------------------------------------
-- Each destination on its own: b fails, the others succeed once and are
-- not sent again while b retries; b fails for good, is replayed alone
-- ---------------------------------------------------------------------------
SELECT * FROM txoutbox.dispatch(topic => 'fan.order', retry_delay => '0');
SELECT * FROM pg_temp.copies(:'order_id');
SELECT d.route_id, d.last_error FROM txoutbox.destinations(:'order_id') d WHERE d.last_error IS NOT NULL;
SELECT * FROM txoutbox.dispatch(topic => 'fan.order', retry_delay => '0');
SELECT * FROM pg_temp.copies(:'order_id');
SELECT route, message_key, n, attempt FROM public.fan_got ORDER BY route;
SELECT status, attempt_count FROM txoutbox.replay((SELECT id FROM txoutbox.messages
                                                    WHERE fanout_of = :'order_id' AND route_id = 3));
SELECT * FROM pg_temp.copies(:'order_id');
-- stats show it per destination
SELECT topic, status, messages, route_id, publisher FROM txoutbox.stats WHERE topic = 'fan.order' ORDER BY status, route_id;
-- list() and get() show each copy
SELECT count(*) AS listed FROM txoutbox.list(topic => 'fan.order') WHERE fanout_of = :'order_id';
SELECT status FROM txoutbox.get((SELECT id FROM txoutbox.messages WHERE fanout_of = :'order_id' AND route_id = 2));

-- A copy goes through its own route only, even after a more specific
-- ordinary route for its topic appears; the ordinary copy follows the
-- topic's routing as before
SELECT id FROM txoutbox.add_route('fan.other', 'function', '{"function": "public.fan_c"}');
DELETE FROM public.fan_got;
SELECT * FROM txoutbox.dispatch(topic => 'fan.other');
SELECT route, n FROM public.fan_got ORDER BY route;
SELECT * FROM pg_temp.copies(:'other_id');
SELECT txoutbox.remove_route(id) FROM txoutbox.routes WHERE topic_pattern = 'fan.other';

-- claim() by an external consumer claims copies like any message
SELECT route_id, status, locked_by FROM txoutbox.claim('ext', 10, topic => 'sub.x');

-- ---------------------------------------------------------------------------
-- Per-key order holds per destination: a's key goes on while b's waits
-- ---------------------------------------------------------------------------
TRUNCATE txoutbox.messages;
TRUNCATE public.fan_got;
SELECT id FROM txoutbox.add_route('seq', 'function', '{"fanout": true, "ordered": true, "function": "public.fan_a"}');
SELECT id FROM txoutbox.add_route('seq', 'function', '{"fanout": true, "ordered": true, "function": "public.fan_b"}');
SELECT count(*) FROM generate_series(1, 3) g, txoutbox.enqueue('seq', jsonb_build_object('n', g), message_key => 'k');
SELECT * FROM txoutbox.dispatch(topic => 'seq', retry_delay => '0');
SELECT * FROM txoutbox.dispatch(topic => 'seq', retry_delay => '0');
SELECT * FROM txoutbox.dispatch(topic => 'seq', retry_delay => '0');
SELECT route, n FROM public.fan_got ORDER BY n;
SELECT route_id, payload ->> 'n' AS n, status, attempt_count FROM txoutbox.messages ORDER BY route_id, id;
SELECT topic, status, messages, route_id, blocked_keys FROM txoutbox.stats WHERE topic = 'seq' ORDER BY route_id, status;

-- ---------------------------------------------------------------------------
-- Route changes reach enqueue at once in the transaction that makes them,
-- and not past their rollback (the cache of fan-out routes follows them)
-- ---------------------------------------------------------------------------
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
SELECT * FROM pg_temp.fan_of('chg');
BEGIN;
SELECT id FROM txoutbox.add_route('chg', 'notify', '{"fanout": true}');
SELECT * FROM pg_temp.fan_of('chg');
ROLLBACK;
SELECT * FROM pg_temp.fan_of('chg');
BEGIN;
SAVEPOINT s;
SELECT id FROM txoutbox.add_route('chg', 'notify', '{"fanout": true}');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM pg_temp.fan_of('chg');
COMMIT;
SELECT id FROM txoutbox.add_route('chg', 'notify', '{"fanout": true}');
SELECT id FROM txoutbox.add_route('chg', 'notify', '{"fanout": true, "channel": "other"}');
SELECT * FROM pg_temp.fan_of('chg');
-- a disabled subscription gets no copies; those it has wait for it
UPDATE txoutbox.routes SET enabled = false WHERE id = 4;
SELECT * FROM pg_temp.fan_of('chg');
SELECT * FROM txoutbox.dispatch();
SELECT route_id, status, count(*) FROM txoutbox.messages WHERE route_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2;
UPDATE txoutbox.routes SET enabled = true WHERE id = 4;
SELECT * FROM txoutbox.dispatch();
SELECT route_id, status, count(*) FROM txoutbox.messages WHERE route_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2;
TRUNCATE txoutbox.routes;
SELECT * FROM pg_temp.fan_of('chg');

-- notified_since() lists a notify subscription's copies
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
SELECT id FROM txoutbox.add_route('ns', 'notify', '{"fanout": true, "channel": "txo_ns"}');
SELECT count(*) FROM txoutbox.enqueue('ns', '{}');
SELECT * FROM txoutbox.dispatch();
SELECT count(*) AS caught_up FROM txoutbox.notified_since(now() - interval '1 minute', channel => 'txo_ns');

-- A tenant-bound session sees its tenant's copies only
SELECT count(*) FROM txoutbox.enqueue('ns', '{}', tenant_id => 'A');
SET txoutbox.tenant_id = 'B';
SELECT id AS a_id FROM txoutbox.messages WHERE tenant_id = 'A' \gset
SELECT pg_temp.try(format('SELECT * FROM txoutbox.destinations(%L)', :'a_id'), :'a_id');
RESET txoutbox.tenant_id;

TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
DROP TABLE public.fan_got;
DROP FUNCTION public.fan_a(txoutbox.messages), public.fan_b(txoutbox.messages), public.fan_c(txoutbox.messages);
