-- dispatch: one dispatch round in the caller's session, through a notify
-- route and function routes; retrying with last_error, failed after
-- max_attempts; a topic with no route is an error.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too: the extension is created by core_enqueue otherwise
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;

-- Publisher functions: one records what it was given; one raises after
-- writing (its write must be rolled back with it).  They qualify every name:
-- a publisher must not depend on the search_path it is called with.
CREATE TABLE public.published (message_key text, topic text, status text, attempt int, locked_by text);
CREATE FUNCTION public.publish_ok(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.published VALUES (m.message_key, m.topic, m.status, m.attempt_count, m.locked_by);
END
$$;
CREATE FUNCTION public.publish_fail(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.published VALUES (m.message_key, m.topic, 'SHOULD BE ROLLED BACK', m.attempt_count, m.locked_by);
    RAISE EXCEPTION 'downstream refused %', m.message_key;
END
$$;
CREATE FUNCTION public.publish_gone(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;

-- No routes at all: nothing is claimed.
SELECT count(*) FROM txoutbox.enqueue('ev.notify.a', '{}', message_key => 'n0');
SELECT * FROM txoutbox.dispatch();
SELECT message_key, status, attempt_count FROM txoutbox.messages;
TRUNCATE txoutbox.messages;

SELECT topic_pattern, publisher FROM txoutbox.add_route('ev.notify.*', 'notify', '{"channel": "txoutbox_regress"}');
SELECT topic_pattern, publisher FROM txoutbox.add_route('ev.fn.ok', 'function', '{"function": "public.publish_ok"}');
SELECT topic_pattern, publisher FROM txoutbox.add_route('ev.fn.*', 'function', '{"function": "public.publish_fail"}');
SELECT topic_pattern, publisher FROM txoutbox.add_route('ev.gone', 'function', '{"function": "public.publish_gone"}');
DROP FUNCTION public.publish_gone(txoutbox.messages);

SELECT count(*) FROM txoutbox.enqueue('ev.notify.a', '{"n": 1}', message_key => 'n1');
SELECT count(*) FROM txoutbox.enqueue('ev.notify.b', '{"n": 2}', message_key => 'n2');
SELECT count(*) FROM txoutbox.enqueue('ev.fn.ok', '{"n": 3}', message_key => 'ok1');
SELECT count(*) FROM txoutbox.enqueue('ev.fn.ok', '{"n": 4}', message_key => 'ok2');
SELECT count(*) FROM txoutbox.enqueue('ev.fn.bad', '{"n": 5}', message_key => 'bad', max_attempts => 2);
SELECT count(*) FROM txoutbox.enqueue('ev.gone', '{"n": 6}', message_key => 'gone');
SELECT count(*) FROM txoutbox.enqueue('nowhere.x', '{"n": 7}', message_key => 'unrouted');
SELECT count(*) FROM txoutbox.enqueue('ev.notify.later', '{"n": 8}', message_key => 'later', available_at => now() + interval '1 hour');

-- dispatch() inside a transaction that rolls back leaves everything as it was.
BEGIN;
SELECT * FROM txoutbox.dispatch(consumer => 'rolled-back', retry_delay => '0');
ROLLBACK;
SELECT message_key, status, attempt_count FROM txoutbox.messages ORDER BY id;
SELECT count(*) FROM published;

-- One round: the notify messages and the function messages that return
-- succeed; the one that raises is retried with the error as last_error; the
-- route whose function was dropped retries with that reason; the unrouted
-- and the delayed message are not claimed.
SELECT * FROM txoutbox.dispatch(consumer => 'regress', retry_delay => '1 hour');
SELECT message_key, status, attempt_count, locked_by, locked_at IS NULL AS unlocked,
       published_at IS NOT NULL AS published,
       regexp_replace(last_error, '^(public\.)?publish_fail\(txoutbox\.messages\)', 'publish_fail(...)') AS last_error
  FROM txoutbox.messages ORDER BY id;
-- retry_delay decides when the retry is due
SELECT message_key, available_at > now() + interval '59 minutes' AS due_in_an_hour
  FROM txoutbox.messages WHERE status = 'retrying' ORDER BY id;
-- the function was called with the claimed row (processing, attempt 1,
-- locked by the dispatch consumer); the raising call's write was rolled back
SELECT * FROM published ORDER BY message_key;

-- Nothing is due now.
SELECT * FROM txoutbox.dispatch();

-- The second attempt of 'bad' is its last (max_attempts 2): failed.
UPDATE txoutbox.messages SET available_at = now() WHERE message_key = 'bad';
SELECT * FROM txoutbox.dispatch(consumer => 'regress', retry_delay => '0');
SELECT message_key, status, attempt_count, max_attempts,
       regexp_replace(last_error, '^(public\.)?publish_fail\(txoutbox\.messages\)', 'publish_fail(...)') AS last_error
  FROM txoutbox.messages WHERE message_key = 'bad';
-- replayed, it goes round again from attempt 1; without retry_delay the
-- first retry waits txoutbox.retry_base_delay
SELECT r.status, r.attempt_count FROM txoutbox.messages m, LATERAL txoutbox.replay(m.id) r
 WHERE m.message_key = 'bad';
SET txoutbox.retry_base_delay = '2s';
SELECT * FROM txoutbox.dispatch(consumer => 'regress', topic => 'ev.fn.bad');
RESET txoutbox.retry_base_delay;
SELECT message_key, status, attempt_count,
       regexp_replace(last_error, '^(public\.)?publish_fail\(txoutbox\.messages\)', 'publish_fail(...)') AS last_error,
       available_at - updated_at = interval '2 seconds' AS waits_base_delay
  FROM txoutbox.messages WHERE message_key = 'bad';

-- dispatch(topic => ...): only that topic, and max_messages is respected.
TRUNCATE txoutbox.messages;
TRUNCATE published;
SELECT count(*) FROM generate_series(1, 3) g,
       LATERAL txoutbox.enqueue('ev.fn.ok', pg_catalog.to_jsonb(g), message_key => 'ok' || g) e;
SELECT count(*) FROM txoutbox.enqueue('ev.notify.a', '{}', message_key => 'n1');
SELECT * FROM txoutbox.dispatch(topic => 'ev.fn.ok', max_messages => 2);
SELECT message_key, status FROM txoutbox.messages ORDER BY id;
SELECT * FROM txoutbox.dispatch(topic => 'ev.fn.ok');
SELECT * FROM txoutbox.dispatch(topic => 'ev.notify.a');
SELECT message_key, status FROM txoutbox.messages ORDER BY id;
SELECT message_key, locked_by FROM published ORDER BY message_key;
-- a topic routed by a prefix pattern is routed
SELECT * FROM txoutbox.dispatch(topic => 'ev.notify.anything');

-- A topic given explicitly with no route is an error (publisher not
-- configured), and nothing is claimed.
SELECT count(*) FROM txoutbox.enqueue('nowhere.x', '{}', message_key => 'unrouted');
SELECT * FROM txoutbox.dispatch(topic => 'nowhere.x');
\echo :LAST_ERROR_SQLSTATE
SELECT message_key, status, attempt_count FROM txoutbox.messages WHERE topic = 'nowhere.x';

-- Bad arguments.
SELECT * FROM txoutbox.dispatch(consumer => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM txoutbox.dispatch(consumer => '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM txoutbox.dispatch(max_messages => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM txoutbox.dispatch(max_messages => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM txoutbox.dispatch(max_messages => 10001);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM txoutbox.dispatch(retry_delay => '-1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM txoutbox.dispatch(claim_lock_to => now() - interval '1 minute');
\echo :LAST_ERROR_SQLSTATE

-- A column added to txoutbox.messages behind the extension's back: the copy
-- of a claimed row is sized from the row's descriptor and refuses a row it
-- does not know (it used to fill fixed arrays: a stack overrun in a release
-- build).  The error rolls back the claim.
BEGIN;
ALTER TABLE txoutbox.messages ADD COLUMN planted integer;
SELECT count(*) FROM txoutbox.enqueue('ev.notify.planted', '{}');
SELECT * FROM txoutbox.dispatch(topic => 'ev.notify.planted');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) FROM txoutbox.messages WHERE topic = 'ev.notify.planted';
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes;
DROP TABLE published;
DROP FUNCTION public.publish_ok(txoutbox.messages);
DROP FUNCTION public.publish_fail(txoutbox.messages);
