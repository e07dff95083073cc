-- trace_context: the W3C traceparent / tracestate of the enqueuing
-- transaction is stored in the message's headers, from the headers given
-- or from the settings txoutbox.traceparent / txoutbox.tracestate (SET
-- LOCAL for a transaction), and checked; publishers send headers on (as
-- HTTP headers, in the redis entry's headers, in notify's envelope, as a
-- CloudEvents extension).  Delivery: test/t/096_trace_context.pl.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;
\set ECHO none
\i test/regress_helpers.sql
\set ECHO all

-- the settings are checked when set
SET txoutbox.traceparent = 'not a traceparent';
SET txoutbox.traceparent = '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01';
SET txoutbox.traceparent = '00-00000000000000000000000000000000-00f067aa0ba902b7-01';
SET txoutbox.traceparent = 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SET txoutbox.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra';
SET txoutbox.tracestate = 'Congo=t61rcWkgMzE';
SET txoutbox.tracestate = 'congo';
SET txoutbox.tracestate = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';
SHOW txoutbox.tracestate;
RESET txoutbox.tracestate;
-- a later version may have more fields
SET txoutbox.traceparent = 'cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds';
RESET txoutbox.traceparent;

-- no trace context: headers as given
SELECT headers FROM txoutbox.enqueue('t', '{}', headers => '{"h": "v"}');
-- SET LOCAL for the transaction: added to every message it enqueues
BEGIN;
SET LOCAL txoutbox.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SET LOCAL txoutbox.tracestate = 'rojo=00f067aa0ba902b7';
SELECT headers FROM txoutbox.enqueue('t', '{}');
SELECT headers FROM txoutbox.enqueue('t', '{}', headers => '{"h": "v"}');
-- a traceparent in the headers (any case) wins: the settings add nothing
SELECT headers FROM txoutbox.enqueue('t', '{}',
       headers => '{"TraceParent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}');
COMMIT;
SELECT headers FROM txoutbox.enqueue('t', '{}');
-- headers are checked
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"traceparent": "00-abc"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}',
       headers => '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"tracestate": "a=b=c"}')$$);
SELECT pg_temp.try(format('SELECT txoutbox.enqueue(%L, %L, headers => jsonb_build_object(%L, %L))',
                          't', '{}', 'tracestate', repeat('a=b,', 40) || 'a=b'));
SELECT headers FROM txoutbox.enqueue('t', '{}', headers => '{"tracestate": "tenant@vendor=x , other=y"}');
-- fan-out copies carry it too
SELECT id FROM txoutbox.add_route('t.fan', 'notify', '{"fanout": true}') \gset
BEGIN;
SET LOCAL txoutbox.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SELECT count(*) FROM txoutbox.enqueue('t.fan', '{}');
COMMIT;
SELECT route_id, headers FROM txoutbox.messages WHERE topic = 't.fan';
SELECT txoutbox.remove_route(:id);

TRUNCATE txoutbox.messages;
