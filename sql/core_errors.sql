-- core_errors: every error of the state machine with its SQLSTATE.
--   22004  a required argument is null
--   22023  a bad value
--   P0002  an unknown id
--   55000  a wrong status, or a lease held by another consumer
-- An error about a message names its id and its current status; the id is
-- shown as <id>.  A failed call changes nothing.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too: the extension is created by core_enqueue otherwise
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;

\set ECHO none
\i test/regress_helpers.sql
\set ECHO all
-- The whole table as text, to show that failed calls changed no message.
CREATE FUNCTION pg_temp.table_text() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(m::text, E'\n' ORDER BY m.id), '') FROM txoutbox.messages m
$$;

-- enqueue ------------------------------------------------------------------
SELECT count(*) FROM txoutbox.enqueue('seed', '{}');
SELECT pg_temp.table_text() AS before_enqueue \gset
SELECT pg_temp.try($$SELECT txoutbox.enqueue(NULL, '{}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue(topic => NULL, payload => NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('', '{}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue(repeat('t', 256), '{}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue(repeat('é', 256), '{}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '[]')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '"x-a: 1"')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => 'null')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"x-a": 1}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"x-a": "ok", "x-b": true}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"x-a": null}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"x-a": ["v"]}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"x-a": {"b": "c"}}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"bad name": "v"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"": "v"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', headers => '{"x-a": "line\r\nX-Injected: 1"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', max_attempts => 0)$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', max_attempts => -1)$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', available_at => 'infinity')$$);
SELECT pg_temp.try($$SELECT txoutbox.enqueue('t', '{}', available_at => '-infinity')$$);
-- the boundaries are accepted (and rolled back here)
BEGIN;
SELECT pg_temp.try($$SELECT txoutbox.enqueue(repeat('t', 255), '{}', max_attempts => 1,
                                             headers => '{"x-a": "", "X_B.c~1": "v"}')$$);
ROLLBACK;
-- no failed enqueue left a row
SELECT pg_temp.table_text() = :'before_enqueue' AS table_unchanged;
-- the same errors straight from psql, with their SQLSTATE
SELECT txoutbox.enqueue(NULL, '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.enqueue(repeat('t', 256), '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.enqueue('t', '{}', headers => '{"x-a": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.enqueue('t', '{}', max_attempts => 0);
\echo :LAST_ERROR_SQLSTATE

-- claim --------------------------------------------------------------------
SELECT pg_temp.table_text() AS before_claim \gset
SELECT pg_temp.try($$SELECT txoutbox.claim(NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('')$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', 0)$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', -5)$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', 10001)$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', as_of => NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', as_of => 'infinity')$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', lock_until => 'infinity')$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', lock_until => now())$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', lock_until => now() - interval '1 minute')$$);
SELECT pg_temp.try($$SELECT txoutbox.claim('w', lock_until => '2020-01-01 00:00:00+00', as_of => '2020-01-01 00:00:00+00')$$);
-- nothing was claimed by the refused calls
SELECT pg_temp.table_text() = :'before_claim' AS table_unchanged;
SELECT txoutbox.claim('w', 0);
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.claim('w', 10001);
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.claim(NULL);
\echo :LAST_ERROR_SQLSTATE

-- the marks and replay: null arguments and unknown ids -------------------------
SELECT pg_temp.try($$SELECT txoutbox.mark_succeeded(NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.mark_succeeded(txoutbox.uuid_v7(), published_at => NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.mark_failed(NULL, 'r')$$);
SELECT pg_temp.try($$SELECT txoutbox.mark_failed(txoutbox.uuid_v7(), NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.mark_failed(txoutbox.uuid_v7(), 'r', failed_at => NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.replay(NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.get(NULL)$$);
SELECT '00000000-0000-7000-8000-000000000001'::uuid AS unknown \gset
SELECT pg_temp.try(format('SELECT txoutbox.mark_succeeded(%L)', :'unknown'), :'unknown');
SELECT pg_temp.try(format('SELECT txoutbox.mark_succeeded(%L, consumer => %L)', :'unknown', 'w'), :'unknown');
SELECT pg_temp.try(format('SELECT txoutbox.mark_failed(%L, %L)', :'unknown', 'r'), :'unknown');
SELECT pg_temp.try(format('SELECT txoutbox.replay(%L)', :'unknown'), :'unknown');
SELECT pg_temp.try(format('SELECT txoutbox.get(%L)', :'unknown'), :'unknown');
SELECT txoutbox.get('00000000-0000-7000-8000-000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.mark_succeeded('00000000-0000-7000-8000-000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.replay('00000000-0000-7000-8000-000000000001');
\echo :LAST_ERROR_SQLSTATE
SELECT txoutbox.mark_failed('00000000-0000-7000-8000-000000000001', NULL);
\echo :LAST_ERROR_SQLSTATE

-- wrong status: one message in each status -------------------------------------
TRUNCATE txoutbox.messages;
SELECT id AS pending FROM txoutbox.enqueue('s', '{}', message_key => 'pending', available_at => '2030-01-01 00:00:00+00') \gset
SELECT id AS processing FROM txoutbox.enqueue('s', '{}', message_key => 'processing', available_at => '2020-01-01 00:00:00+00') \gset
SELECT id AS retrying FROM txoutbox.enqueue('s', '{}', message_key => 'retrying', available_at => '2020-01-01 00:00:00+00') \gset
SELECT id AS succeeded FROM txoutbox.enqueue('s', '{}', message_key => 'succeeded', available_at => '2020-01-01 00:00:00+00') \gset
SELECT id AS failed FROM txoutbox.enqueue('s', '{}', message_key => 'failed', available_at => '2020-01-01 00:00:00+00') \gset
SELECT count(*) FROM txoutbox.claim('holder', 10, as_of => '2020-01-01 00:01:00+00');
SELECT status FROM txoutbox.mark_failed(:'retrying', 'r', next_attempt_at => '2030-01-01 00:00:00+00');
SELECT status FROM txoutbox.mark_succeeded(:'succeeded');
SELECT status FROM txoutbox.mark_failed(:'failed', 'f');
SELECT message_key, status FROM txoutbox.messages ORDER BY id;
SELECT pg_temp.table_text() AS before_marks \gset

-- mark_succeeded and mark_failed need processing
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L)', :'pending'), :'pending');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L)', :'retrying'), :'retrying');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L)', :'succeeded'), :'succeeded');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L)', :'failed'), :'failed');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L, consumer => %L)', :'pending', 'holder'), :'pending');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_failed(%L, %L)', :'pending', 'x'), :'pending');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_failed(%L, %L, now())', :'retrying', 'x'), :'retrying');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_failed(%L, %L)', :'succeeded', 'x'), :'succeeded');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_failed(%L, %L)', :'failed', 'x'), :'failed');
-- a consumer that does not hold the lease
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L, consumer => %L)', :'processing', 'other'), :'processing');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_failed(%L, %L, consumer => %L)', :'processing', 'x', 'other'), :'processing');
-- replay needs failed
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.replay(%L)', :'pending'), :'pending');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.replay(%L)', :'processing'), :'processing');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.replay(%L)', :'retrying'), :'retrying');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.replay(%L)', :'succeeded'), :'succeeded');
-- bad times
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L, published_at => %L)', :'processing', 'infinity'), :'processing');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_failed(%L, %L, next_attempt_at => %L)', :'processing', 'x', 'infinity'), :'processing');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_failed(%L, %L, failed_at => %L)', :'processing', 'x', '-infinity'), :'processing');
-- no message changed
SELECT pg_temp.table_text() = :'before_marks' AS table_unchanged;

-- the error names the id and the current status: checked against format()
DO $$
DECLARE
    m record;
BEGIN
    FOR m IN SELECT id, status FROM txoutbox.messages WHERE status <> 'processing' ORDER BY id LOOP
        BEGIN
            PERFORM txoutbox.mark_succeeded(m.id);
            RAISE NOTICE '% : no error', m.status;
        EXCEPTION WHEN object_not_in_prerequisite_state THEN
            RAISE NOTICE '% : sqlstate %, message is the expected one: %', m.status, SQLSTATE,
                SQLERRM = format('cannot mark succeeded message %s: its status is %s', m.id, m.status);
        END;
    END LOOP;
    FOR m IN SELECT id, status FROM txoutbox.messages WHERE status <> 'failed' ORDER BY id LOOP
        BEGIN
            PERFORM txoutbox.replay(m.id);
            RAISE NOTICE '% : no error', m.status;
        EXCEPTION WHEN object_not_in_prerequisite_state THEN
            RAISE NOTICE 'replay % : sqlstate %, names id and status: %', m.status, SQLSTATE,
                position(m.id::text IN SQLERRM) > 0 AND position(m.status IN SQLERRM) > 0;
        END;
    END LOOP;
END
$$;

-- The same, straight from psql (VERBOSITY sqlstate: the messages hold ids).
\set VERBOSITY sqlstate
SELECT txoutbox.mark_succeeded(:'pending');
SELECT txoutbox.mark_succeeded(:'processing', consumer => 'other');
SELECT txoutbox.mark_failed(:'succeeded', 'x');
SELECT txoutbox.replay(:'succeeded');
SELECT message_key, status, locked_by FROM txoutbox.get(:'processing');

-- A failed call inside a transaction aborts it: what the transaction did
-- before is rolled back with it.
BEGIN;
SELECT status FROM txoutbox.mark_succeeded(:'processing', consumer => 'holder');
SELECT txoutbox.replay(:'pending');
ROLLBACK;
\set VERBOSITY default
SELECT pg_temp.table_text() = :'before_marks' AS table_unchanged;

-- list --------------------------------------------------------------------
SELECT pg_temp.try($$SELECT txoutbox.list(status => 'done')$$);
SELECT pg_temp.try($$SELECT txoutbox.list(status => 'PENDING')$$);
SELECT pg_temp.try($$SELECT txoutbox.list(max_messages => NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.list(max_messages => 0)$$);
SELECT pg_temp.try($$SELECT txoutbox.list(max_messages => 10001)$$);
TRUNCATE txoutbox.messages;
