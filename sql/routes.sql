-- routes: add_route with its validation, remove_route, route_for (the most
-- specific enabled match) and the stats view's routed/unrouted column.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too: the extension is created by core_enqueue otherwise
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes;

\set ECHO none
\i test/regress_helpers.sql
\set ECHO all

-- A publisher function takes the message row.
CREATE FUNCTION public.route_sink(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;

-- add_route returns the new route.
SELECT topic_pattern, publisher, config, enabled
  FROM txoutbox.add_route('orders.created', 'notify', '{"channel": "orders"}');
SELECT topic_pattern, publisher, config, enabled
  FROM txoutbox.add_route('orders.*', 'function', '{"function": "public.route_sink"}');
SELECT topic_pattern, publisher, config, enabled
  FROM txoutbox.add_route('orders.eu.*', 'notify');
SELECT topic_pattern, publisher, config, enabled
  FROM txoutbox.add_route(topic_pattern => '*', publisher => 'notify', config => '{"channel": "everything"}');
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('audit', 'function', '{"function": "public.route_sink"}');
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('nulls', 'notify', NULL);
SELECT length(topic_pattern), publisher, config FROM txoutbox.add_route(repeat('p', 254) || '*', 'notify');
SELECT left(topic_pattern, 20) AS topic_pattern, publisher, enabled FROM txoutbox.routes ORDER BY id;

-- route_for(topic): an exact match beats any prefix; else the longest
-- matching prefix; '*' matches everything.
SELECT t.topic, r.topic_pattern, r.publisher
  FROM (VALUES ('orders.created'), ('orders.updated'), ('orders.eu.created'), ('orders.'),
               ('orders'), ('audit'), ('audit.log'), ('billing.paid')) t(topic),
       LATERAL txoutbox.route_for(t.topic) r
 ORDER BY t.topic;
-- disabled routes do not match
UPDATE txoutbox.routes SET enabled = false WHERE topic_pattern IN ('orders.created', '*');
SELECT t.topic, r.topic_pattern
  FROM (VALUES ('orders.created'), ('billing.paid')) t(topic),
       LATERAL txoutbox.route_for(t.topic) r
 ORDER BY t.topic;
SELECT (txoutbox.route_for('billing.paid')).id IS NULL AS no_route;
UPDATE txoutbox.routes SET enabled = true;

-- Validation: every bad route is refused when it is added, and nothing is
-- inserted.
SELECT count(*) AS routes_before FROM txoutbox.routes \gset
SELECT pg_temp.try($$SELECT txoutbox.add_route(NULL, 'notify')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'kafka')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', '')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'NOTIFY')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('a*b', 'notify')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('*a', 'notify')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('a**', 'notify')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('', 'notify')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route(repeat('p', 256), 'notify')$$);
-- notify config
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"chanel": "typo"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"channel": ""}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', format('{"channel": "%s"}', repeat('c', 64))::jsonb)$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"channel": 5}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '["channel"]')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '"orders"')$$);
-- function config
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'function')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'function', '{"function": ""}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'function', '{"function": "public.no_such_function"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'function', '{"function": "public.route_sink", "extra": 1}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'function', '{"function": "pg_catalog.now"}')$$);
-- an existing pattern
SELECT pg_temp.try($$SELECT txoutbox.add_route('orders.*', 'notify')$$);
SELECT count(*) = :routes_before AS nothing_inserted FROM txoutbox.routes;
-- from psql, with the SQLSTATE
SELECT txoutbox.add_route('x', 'kafka');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.add_route('a*b', 'notify');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.add_route('x', 'notify', '{"chanel": "typo"}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.add_route('x', 'function', '{"function": "public.no_such_function"}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.add_route(NULL, 'notify');
\echo :LAST_ERROR_SQLSTATE

-- remove_route(id): true when a route was removed, false when there was none.
SELECT id AS eu_route FROM txoutbox.routes WHERE topic_pattern = 'orders.eu.*' \gset
SELECT txoutbox.remove_route(:eu_route);
SELECT txoutbox.remove_route(:eu_route);
SELECT txoutbox.remove_route(-1);
SELECT pg_temp.try($$SELECT txoutbox.remove_route(NULL)$$);
SELECT r.topic_pattern FROM txoutbox.route_for('orders.eu.created') r;

-- stats: each topic with the route it is published through, or unrouted.
SELECT id AS star_route FROM txoutbox.routes WHERE topic_pattern = '*' \gset
SELECT txoutbox.remove_route(:star_route);
SELECT count(*) FROM (VALUES ('orders.created'), ('orders.updated'), ('audit'), ('billing.paid')) t(topic),
       LATERAL txoutbox.enqueue(t.topic, '{}') e;
SELECT topic, status, messages, publisher, unrouted,
       route_id = (txoutbox.route_for(topic)).id AS route_is_route_for
  FROM txoutbox.stats ORDER BY topic;

TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes;
DROP FUNCTION public.route_sink(txoutbox.messages);
