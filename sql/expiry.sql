-- expiry: enqueue(..., expires_at => t) and a route's "ttl_ms" (from
-- created_at; the earlier of the two wins).  A message not published by
-- its expiry ends failed, last_error "expired" (with the last attempt's
-- error when there was one), and is never given out after it: claim()
-- and dispatch() fail it instead, also when its lease ended, and a retry
-- that would come after it is due at the expiry.
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

-- ---------------------------------------------------------------------------
-- expires_at: claimed before it, failed "expired" at it or after
-- ---------------------------------------------------------------------------
SELECT id AS e1 FROM txoutbox.enqueue('exp.a', '{}', expires_at => '2030-01-01 00:10:00+00',
                                      available_at => '2030-01-01 00:00:00+00') \gset
SELECT expires_at FROM txoutbox.get(:'e1');
SELECT status, attempt_count FROM txoutbox.claim('c', 10, topic => 'exp.a', as_of => '2030-01-01 00:09:59+00',
                                                 lock_until => '2030-01-01 00:12:00+00');
-- its lease ends after its expiry: not claimed again, failed
SELECT count(*) AS claimed FROM txoutbox.claim('c2', 10, topic => 'exp.a', as_of => '2030-01-01 00:12:01+00');
SELECT status, attempt_count, last_error, locked_by FROM txoutbox.get(:'e1');
-- a retry's error is kept after "expired"
SELECT id AS e2 FROM txoutbox.enqueue('exp.b', '{}', expires_at => '2030-01-01 00:10:00+00',
                                      available_at => '2030-01-01 00:00:00+00') \gset
SELECT count(*) FROM txoutbox.claim('c', 10, topic => 'exp.b', as_of => '2030-01-01 00:01:00+00');
SELECT status FROM txoutbox.mark_failed(:'e2', 'HTTP 503: down', next_attempt_at => '2030-01-01 00:20:00+00');
SELECT count(*) AS claimed FROM txoutbox.claim('c', 10, topic => 'exp.b', as_of => '2030-01-01 00:20:00+00');
SELECT status, attempt_count, last_error FROM txoutbox.get(:'e2');
-- exactly at the expiry is too late
SELECT id AS e3 FROM txoutbox.enqueue('exp.c', '{}', expires_at => '2030-01-01 00:10:00+00',
                                      available_at => '2030-01-01 00:00:00+00') \gset
SELECT count(*) AS claimed FROM txoutbox.claim('c', 10, topic => 'exp.c', as_of => '2030-01-01 00:10:00+00');
SELECT status, last_error FROM txoutbox.get(:'e3');
-- an expiry already past: failed at the first claim
SELECT id AS e4 FROM txoutbox.enqueue('exp.d', '{}', expires_at => now() - interval '1 second') \gset
SELECT count(*) AS claimed FROM txoutbox.claim('c', 10, topic => 'exp.d', as_of => clock_timestamp());
SELECT status, last_error FROM txoutbox.get(:'e4');
-- replayed, it expires again: its expiry has passed
SELECT status FROM txoutbox.replay(:'e4');
SELECT count(*) AS claimed FROM txoutbox.claim('c', 10, topic => 'exp.d', as_of => clock_timestamp());
SELECT status, last_error FROM txoutbox.get(:'e4');
-- bad expiries
SELECT pg_temp.try($$SELECT txoutbox.enqueue('bad', '{}', expires_at => 'infinity')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('bad', '{}', expires_at => '-infinity')$$);
SELECT expires_at IS NULL AS no_expiry FROM txoutbox.enqueue('none', '{}', expires_at => NULL);

-- ---------------------------------------------------------------------------
-- A route's ttl_ms: from created_at, whatever the message's own expiry
-- (the earlier wins); it applies to the messages the route has now
-- ---------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT txoutbox.add_route('ttl', 'notify', '{"ttl_ms": 0}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('ttl', 'notify', '{"ttl_ms": "1 minute"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('ttl', 'notify', '{"ttl_ms": 315360000001}')$$);
SELECT id FROM txoutbox.add_route('ttl.*', 'notify', '{"ttl_ms": 60000}');
SELECT count(*) FROM txoutbox.enqueue('ttl.a', '{"n": 1}');
SELECT count(*) FROM txoutbox.enqueue('ttl.a', '{"n": 2}', expires_at => now() + interval '30 seconds');
SELECT count(*) FROM txoutbox.enqueue('ttl.a', '{"n": 3}', expires_at => now() + interval '1 hour');
SELECT payload ->> 'n' AS n FROM txoutbox.claim('c', 10, topic => 'ttl.a', as_of => now() + interval '40 seconds')
 ORDER BY 1;
TRUNCATE txoutbox.messages;
SELECT count(*) FROM txoutbox.enqueue('ttl.a', '{"n": 1}');
SELECT count(*) FROM txoutbox.enqueue('ttl.a', '{"n": 2}', expires_at => now() + interval '1 hour');
SELECT count(*) FROM txoutbox.enqueue('untimed', '{"n": 3}');
SELECT id FROM txoutbox.add_route('untimed', 'notify');
SELECT count(*) AS claimed FROM txoutbox.claim('c', 10, as_of => now() + interval '61 seconds');
SELECT topic, payload ->> 'n' AS n, status, last_error FROM txoutbox.messages ORDER BY id;
-- a fan-out route's ttl_ms applies to its own copies only
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
SELECT id FROM txoutbox.add_route('fan', 'notify');
SELECT id FROM txoutbox.add_route('fan', 'notify', '{"fanout": true, "ttl_ms": 1000}');
SELECT count(*) FROM txoutbox.enqueue('fan', '{}');
SELECT count(*) AS claimed FROM txoutbox.claim('c', 10, as_of => now() + interval '2 seconds');
SELECT route_id, status, last_error FROM txoutbox.messages ORDER BY id;

-- ---------------------------------------------------------------------------
-- dispatch(): a message whose retry would come after its expiry is due at
-- its expiry, and failed "expired" then, with the retry's error
-- ---------------------------------------------------------------------------
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
CREATE FUNCTION public.exp_fail(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'downstream refused'; END $$;
SELECT id FROM txoutbox.add_route('fail', 'function', '{"function": "public.exp_fail"}');
SELECT id FROM txoutbox.add_route('late', 'notify');
SELECT id AS f1, expires_at AS f1_expires FROM txoutbox.enqueue('fail', '{}', expires_at => clock_timestamp() + interval '1 second') \gset
SELECT * FROM txoutbox.dispatch(retry_delay => '1 hour');
SELECT status, attempt_count, available_at = expires_at AS due_at_its_expiry, last_error FROM txoutbox.get(:'f1');
SELECT pg_sleep(greatest(0, extract(epoch FROM :'f1_expires'::timestamptz - clock_timestamp())::float8 + 0.05));
SELECT * FROM txoutbox.dispatch(retry_delay => '1 hour');
SELECT status, attempt_count, last_error FROM txoutbox.get(:'f1');
-- a message that expired while it waited is failed by the round, not sent
SELECT id AS l1 FROM txoutbox.enqueue('late', '{}', expires_at => clock_timestamp()) \gset
SELECT * FROM txoutbox.dispatch();
SELECT status, attempt_count, last_error FROM txoutbox.get(:'l1');
-- stats count them failed
SELECT topic, status, messages FROM txoutbox.stats ORDER BY topic, status;
-- one whose expiry passes between its claim and its turn is failed unsent,
-- the attempt its claim counted given back: both claimed in one round, the
-- function route's batch goes first and takes 3 s, and the notify
-- route's message expires 2 s after it was enqueued
CREATE FUNCTION public.exp_slow(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); END $$;
SELECT id FROM txoutbox.add_route('slow', 'function', '{"function": "public.exp_slow"}');
BEGIN;
SELECT count(*) FROM txoutbox.enqueue('slow', '{}');
SELECT count(*) FROM txoutbox.enqueue('late', '{"behind": "slow"}',
                                      expires_at => clock_timestamp() + interval '2 seconds');
COMMIT;
SELECT * FROM txoutbox.dispatch();
SELECT topic, status, attempt_count, last_error FROM txoutbox.messages
 WHERE topic = 'slow' OR payload ? 'behind' ORDER BY id;

TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
DROP FUNCTION public.exp_fail(txoutbox.messages);
DROP FUNCTION public.exp_slow(txoutbox.messages);
