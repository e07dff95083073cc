-- cloudevents: "body": "cloudevents" on the publishers that have a body
-- (http, redis, and notify, whose notification it replaces the envelope
-- with), and txoutbox.cloudevents_source.  What the events look like is
-- checked with the CNCF SDK by test/t/095_cloudevents.pl.
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

SELECT topic_pattern, config FROM txoutbox.add_route('ce.http', 'http',
       '{"url": "http://127.0.0.1:1/hook", "body": "cloudevents"}');
SELECT topic_pattern, config FROM txoutbox.add_route('ce.notify', 'notify',
       '{"channel": "txo_ce", "body": "cloudevents"}');
SELECT topic_pattern, config FROM txoutbox.add_route('ce.envelope', 'notify', '{"body": "envelope"}');
SELECT pg_temp.try($$SELECT txoutbox.add_route('ce.bad', 'http', '{"url": "http://127.0.0.1:1/", "body": "cloudevent"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('ce.bad', 'notify', '{"body": "payload"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('ce.bad', 'notify', '{"body": 1}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('ce.bad', 'function', '{"function": "pg_catalog.now", "body": "cloudevents"}')$$);

-- the source: by default /txoutbox/<database> (worked out by the route's
-- publisher); a superuser sets another (so can the admin grant set)
SHOW txoutbox.cloudevents_source;
SET txoutbox.cloudevents_source = 'https://shop.example.com/orders';
SHOW txoutbox.cloudevents_source;
RESET txoutbox.cloudevents_source;
SELECT 'txoutbox.cloudevents_source' = ANY (txoutbox._tuning_settings()) AS admin_may_set_it;

-- a notify route's CloudEvents go out like its envelopes (dispatch()
-- publishes them; nobody listens here)
SELECT count(*) FROM txoutbox.enqueue('ce.notify', '{"a": 1}', message_key => 'k');
SELECT * FROM txoutbox.dispatch(topic => 'ce.notify');

TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
