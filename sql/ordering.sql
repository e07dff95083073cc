-- ordering: per-key ordered routes ("ordered": true).  On an ordered route a
-- keyed message is claimable only while no older message (smaller id) of the
-- same topic and key is pending, processing, retrying, or failed and not
-- skipped.  Unkeyed messages, unordered routes and other keys are not held
-- up.  skip() makes a failed head stop blocking its key; replay() undoes the
-- skip.  stats.blocked_keys counts the keys held by failed heads.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages, txoutbox.skipped_messages;
DELETE FROM txoutbox.routes;

CREATE FUNCTION pg_temp.try(cmd text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM,
        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g');
END
$$;

-- A message is named "topic/key#seq" (seq is in its payload).
CREATE FUNCTION pg_temp.label(m txoutbox.messages) RETURNS text
LANGUAGE sql AS $$
    SELECT m.topic || '/' || coalesce(m.message_key, '-') || '#' || (m.payload ->> 'seq')
$$;
CREATE FUNCTION pg_temp.id_of(lbl text) RETURNS uuid
LANGUAGE sql AS $$
    SELECT m.id FROM txoutbox.messages m WHERE pg_temp.label(m) = lbl
$$;
-- enqueue seq 1..n of topic/key, due at 2020-01-01 00:00 (+ the offsets given)
CREATE FUNCTION pg_temp.put(topic text, key text, seqs int[], due_offset interval DEFAULT '0')
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s int;
BEGIN
    FOREACH s IN ARRAY seqs LOOP
        PERFORM txoutbox.enqueue(topic, jsonb_build_object('seq', s), message_key => key,
                                 available_at => '2020-01-01 00:00:00+00'::timestamptz + due_offset);
    END LOOP;
END
$$;
-- claim everything claimable at as_of; the labels in claim order
CREATE FUNCTION pg_temp.claim_at(as_of timestamptz, consumer text DEFAULT 'c1',
                                 lock_until timestamptz DEFAULT '2020-01-01 01:00:00+00',
                                 topic text DEFAULT NULL, max_messages int DEFAULT 100)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m txoutbox.messages;
    result text;
BEGIN
    FOR m IN SELECT * FROM txoutbox.claim(consumer, max_messages, topic, lock_until, as_of) LOOP
        result := concat_ws(' ', result, pg_temp.label(m) || '@' || m.attempt_count);
    END LOOP;
    RETURN coalesce(result, '(none)');
END
$$;
CREATE FUNCTION pg_temp.succeed(lbl text) RETURNS text LANGUAGE sql AS $$
    SELECT status FROM txoutbox.mark_succeeded(pg_temp.id_of(lbl))
$$;
CREATE FUNCTION pg_temp.fail(lbl text, next_at timestamptz DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
    SELECT status FROM txoutbox.mark_failed(pg_temp.id_of(lbl), 'boom', next_at)
$$;
CREATE FUNCTION pg_temp.states(topic_like text DEFAULT '%') RETURNS TABLE (msg text, status text, attempts int)
LANGUAGE sql AS $$
    SELECT pg_temp.label(m), m.status, m.attempt_count FROM txoutbox.messages m
     WHERE m.topic LIKE topic_like ORDER BY m.id
$$;

CREATE TABLE ord_log (n serial, msg text);
CREATE FUNCTION public.ord_log(m txoutbox.messages) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO public.ord_log (msg) VALUES (m.topic || '/' || coalesce(m.message_key, '-') || '#' || (m.payload ->> 'seq'))
$$;

-- Routes: ord.* is ordered; the exact route ord.free is more specific and
-- unordered; plain is unordered ("ordered": false and no field alike).
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('ord.*', 'function',
    '{"function": "public.ord_log", "ordered": true}');
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('ord.free', 'function',
    '{"function": "public.ord_log", "ordered": false}');
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('plain', 'notify', '{}');
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('ord.notify', 'notify',
    '{"channel": "ord_regress", "ordered": true}');

-- 1. Only the head of each key is claimable on an ordered route -------------
SELECT pg_temp.put('ord.x', 'a', '{1,2,3}');
SELECT pg_temp.put('ord.x', 'b', '{1,2}');
SELECT pg_temp.put('ord.x', NULL, '{1,2}');
SELECT pg_temp.put('ord.y', 'a', '{1,2}');
SELECT pg_temp.put('ord.free', 'a', '{1,2}');
SELECT pg_temp.put('plain', 'a', '{1,2}');
SELECT pg_temp.put('ord.notify', 'a', '{1,2}');
-- heads of ord.x/a, ord.x/b, ord.y/a (same key, other topic: independent),
-- ord.notify/a; both unkeyed ord.x messages; all of ord.free and plain
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00');
-- the rest are held behind their processing heads
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00', 'c2');
-- a topic filter does not change that
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00', 'c2', topic => 'ord.x');

-- 2. The head succeeds: the next message of that key (only) is claimable ----
SELECT pg_temp.succeed('ord.x/a#1');
SELECT pg_temp.claim_at('2020-01-01 00:02:00+00');
SELECT pg_temp.claim_at('2020-01-01 00:02:00+00');

-- 3. A retrying head holds its key, also once its retry is due and before it
-- is claimed again; the retry itself is claimable (it is the head) ------------
SELECT pg_temp.fail('ord.x/a#2', '2020-01-01 00:10:00+00');
SELECT pg_temp.claim_at('2020-01-01 00:05:00+00');
SELECT pg_temp.claim_at('2020-01-01 00:10:00+00');
SELECT * FROM pg_temp.states('ord.x');

-- 4. A failed head blocks its key (only), and stats shows it ----------------
SELECT pg_temp.fail('ord.x/a#2');
SELECT pg_temp.succeed('ord.x/b#1');
SELECT pg_temp.claim_at('2020-01-01 00:11:00+00');
SELECT pg_temp.claim_at('2020-01-01 00:12:00+00');
SELECT topic, status, messages, publisher, blocked_keys FROM txoutbox.stats
 WHERE topic LIKE 'ord.x' ORDER BY status;

-- 5. skip(): only a failed message; it stays failed but stops blocking -------
SELECT pg_temp.try(format('SELECT txoutbox.skip(%L)', pg_temp.id_of('ord.x/a#3')));
SELECT pg_temp.try(format('SELECT txoutbox.skip(%L)', pg_temp.id_of('ord.x/b#2')));
SELECT pg_temp.try(format('SELECT txoutbox.skip(%L)', pg_temp.id_of('ord.x/b#1')));
SELECT pg_temp.try('SELECT txoutbox.skip(NULL)');
SELECT pg_temp.try($$SELECT txoutbox.skip('00000000-0000-7000-8000-000000000000')$$);
SELECT count(*) AS skipped_after_errors FROM txoutbox.skipped_messages;
SELECT pg_temp.label(s), s.status, s.attempt_count, s.last_error
  FROM txoutbox.skip(pg_temp.id_of('ord.x/a#2')) s;
-- skipping again is harmless
SELECT s.status FROM txoutbox.skip(pg_temp.id_of('ord.x/a#2')) s;
SELECT pg_temp.label(m) FROM txoutbox.skipped_messages k JOIN txoutbox.messages m USING (id);
SELECT topic, status, messages, blocked_keys FROM txoutbox.stats
 WHERE topic = 'ord.x' AND status = 'failed';
SELECT pg_temp.claim_at('2020-01-01 00:13:00+00');
SELECT * FROM pg_temp.states('ord.x');

-- 6. replay() undoes the skip: the replayed message is pending again and is
-- claimable (nothing older of its key is unfinished) ---------------------------
SELECT pg_temp.succeed('ord.x/a#3');
SELECT pg_temp.label(r), r.status, r.attempt_count FROM txoutbox.replay(pg_temp.id_of('ord.x/a#2')) r;
SELECT count(*) AS skipped FROM txoutbox.skipped_messages;
-- (replay makes it available now; back to the test's clock)
UPDATE txoutbox.messages SET available_at = '2020-01-01 00:14:00+00' WHERE id = pg_temp.id_of('ord.x/a#2');
SELECT pg_temp.claim_at('2020-01-01 00:14:00+00');
-- a later message of the key waits for the replayed one again
SELECT pg_temp.put('ord.x', 'a', '{4}', '00:14');
SELECT pg_temp.claim_at('2020-01-01 00:15:00+00');
SELECT pg_temp.fail('ord.x/a#2');
SELECT pg_temp.claim_at('2020-01-01 00:15:00+00');
SELECT topic, status, blocked_keys FROM txoutbox.stats WHERE topic = 'ord.x' AND status = 'failed';
-- two failed messages of one key, the first skipped: one blocked key; a
-- failed key of another topic counts on its own row
SELECT s.status FROM txoutbox.skip(pg_temp.id_of('ord.x/a#2')) s;
SELECT pg_temp.claim_at('2020-01-01 00:16:00+00');
SELECT pg_temp.fail('ord.x/a#4');
SELECT pg_temp.claim_at('2020-01-01 00:16:00+00', topic => 'ord.y');
SELECT pg_temp.fail('ord.y/a#1');
SELECT topic, status, messages, blocked_keys FROM txoutbox.stats
 WHERE status = 'failed' ORDER BY topic;
SELECT s.status FROM txoutbox.replay(pg_temp.id_of('ord.x/a#2')) s;
SELECT topic, status, messages, blocked_keys FROM txoutbox.stats
 WHERE status = 'failed' ORDER BY topic;

-- 7. Unordered and unkeyed failures block nothing and count no blocked key --
TRUNCATE txoutbox.messages, txoutbox.skipped_messages;
SELECT pg_temp.put('plain', 'k', '{1,2}');
SELECT pg_temp.put('ord.x', NULL, '{1,2}');
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00', max_messages => 1);
SELECT pg_temp.fail('plain/k#1');
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00', max_messages => 1);
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00', max_messages => 1);
SELECT pg_temp.fail('ord.x/-#1');
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00');
SELECT topic, status, messages, blocked_keys FROM txoutbox.stats ORDER BY topic, status;

-- 8. Order is by id, not by available_at: a later message that is due first
-- still waits for the head --------------------------------------------------
TRUNCATE txoutbox.messages;
SELECT pg_temp.put('ord.x', 'a', '{1}', '00:30');
SELECT pg_temp.put('ord.x', 'a', '{2}', '00:00');
SELECT pg_temp.put('ord.x', 'b', '{1}', '00:30');
SELECT pg_temp.put('ord.x', 'b', '{2}', '00:00');
SELECT pg_temp.put('ord.free', 'a', '{1}', '00:30');
SELECT pg_temp.put('ord.free', 'a', '{2}', '00:00');
SELECT pg_temp.claim_at('2020-01-01 00:10:00+00');
SELECT pg_temp.claim_at('2020-01-01 00:30:00+00');

-- 9. Leases: an expired head is claimed again while the rest of its key keeps
-- waiting; an expired head with no attempts left becomes failed and blocks --
TRUNCATE txoutbox.messages;
SELECT pg_temp.put('ord.x', 'a', '{1,2}');
SELECT count(*) FROM txoutbox.enqueue('ord.x', '{"seq": 1}', message_key => 'b', max_attempts => 1,
                                      available_at => '2020-01-01 00:00:00+00');
SELECT pg_temp.put('ord.x', 'b', '{2}');
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00', lock_until => '2020-01-01 00:02:00+00');
SELECT pg_temp.claim_at('2020-01-01 00:03:00+00', 'c2', lock_until => '2020-01-01 00:04:00+00');
SELECT * FROM pg_temp.states('ord.x');
SELECT pg_temp.claim_at('2020-01-01 00:05:00+00', 'c3');
SELECT msg, status FROM pg_temp.states('ord.x');

-- 10. Route changes apply to the next claim --------------------------------
TRUNCATE txoutbox.messages;
SELECT pg_temp.put('ord.free', 'a', '{1,2}');
SELECT pg_temp.put('ord.z', 'a', '{1,2}');
-- disabling the unordered exact route leaves ord.* (ordered) in charge
UPDATE txoutbox.routes SET enabled = false WHERE topic_pattern = 'ord.free';
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00');
TRUNCATE txoutbox.messages;
SELECT pg_temp.put('ord.free', 'a', '{1,2}');
SELECT pg_temp.put('ord.z', 'a', '{1,2}');
-- disabling the ordered route: nothing is ordered any more
UPDATE txoutbox.routes SET enabled = true WHERE topic_pattern = 'ord.free';
UPDATE txoutbox.routes SET enabled = false WHERE topic_pattern IN ('ord.*', 'ord.notify');
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00');
UPDATE txoutbox.routes SET enabled = true;
-- a more specific ordered prefix wins over a less specific unordered one
TRUNCATE txoutbox.messages;
SELECT topic_pattern FROM txoutbox.add_route('deep.*', 'notify', '{}');
SELECT topic_pattern FROM txoutbox.add_route('deep.er.*', 'notify', '{"ordered": true}');
SELECT pg_temp.put('deep.er.x', 'a', '{1,2}');
SELECT pg_temp.put('deep.x', 'a', '{1,2}');
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00');

-- 11. dispatch() publishes one message per ordered key per round, in order;
-- a raising head is retried before anything after it ------------------------
TRUNCATE txoutbox.messages;
TRUNCATE ord_log;
CREATE FUNCTION public.ord_log_picky(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF m.payload ->> 'seq' = '2' AND m.attempt_count < 2 THEN
        RAISE EXCEPTION 'not yet';
    END IF;
    INSERT INTO public.ord_log (msg) VALUES (m.topic || '/' || m.message_key || '#' || (m.payload ->> 'seq'));
END
$$;
SELECT topic_pattern FROM txoutbox.add_route('disp', 'function',
    '{"function": "public.ord_log_picky", "ordered": true}');
SELECT pg_temp.put('disp', 'a', '{1,2,3}');
SELECT pg_temp.put('disp', 'b', '{1,2,3}');
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
SELECT msg FROM ord_log ORDER BY n;
SELECT msg, status, attempts FROM pg_temp.states('disp');

-- 12. purge() of a skipped failed message also forgets the skip -------------
SELECT pg_temp.put('ord.x', 'p', '{1}');
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00', topic => 'ord.x');
SELECT pg_temp.fail('ord.x/p#1');
SELECT s.status FROM txoutbox.skip(pg_temp.id_of('ord.x/p#1')) s;
UPDATE txoutbox.messages SET updated_at = now() - interval '2 days' WHERE message_key = 'p';
SELECT txoutbox.purge('1 day', '{failed}');
SELECT count(*) AS skipped FROM txoutbox.skipped_messages;

-- 13. One at a time also when a skipped message is replayed while a later
-- message of its key is in flight: the replayed one waits for it -------------
TRUNCATE txoutbox.messages, txoutbox.skipped_messages;
SELECT pg_temp.put('ord.x', 'r', '{1,2}');
SELECT pg_temp.claim_at('2020-01-01 00:01:00+00');
SELECT pg_temp.fail('ord.x/r#1');
SELECT s.status FROM txoutbox.skip(pg_temp.id_of('ord.x/r#1')) s;
SELECT pg_temp.claim_at('2020-01-01 00:02:00+00');
SELECT s.status FROM txoutbox.replay(pg_temp.id_of('ord.x/r#1')) s;
UPDATE txoutbox.messages SET available_at = '2020-01-01 00:03:00+00' WHERE id = pg_temp.id_of('ord.x/r#1');
SELECT pg_temp.claim_at('2020-01-01 00:03:00+00');
SELECT pg_temp.succeed('ord.x/r#2');
SELECT pg_temp.claim_at('2020-01-01 00:03:00+00');

TRUNCATE txoutbox.messages, txoutbox.skipped_messages;
DELETE FROM txoutbox.routes;
DROP TABLE ord_log;
DROP FUNCTION public.ord_log(txoutbox.messages);
DROP FUNCTION public.ord_log_picky(txoutbox.messages);
