-- core_marks: mark_succeeded, mark_failed (retrying or failed), the consumer
-- check, and replay.  Ids are kept in psql variables, never printed.
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

SELECT id AS ok1 FROM txoutbox.enqueue('m', '{}', message_key => 'ok1', max_attempts => 3, available_at => '2020-01-01 00:00:00+00') \gset
SELECT id AS ok2 FROM txoutbox.enqueue('m', '{}', message_key => 'ok2', max_attempts => 3, available_at => '2020-01-01 00:00:00+00') \gset
SELECT id AS re1 FROM txoutbox.enqueue('m', '{}', message_key => 're1', max_attempts => 3, available_at => '2020-01-01 00:00:00+00') \gset
SELECT id AS one FROM txoutbox.enqueue('m', '{}', message_key => 'one', max_attempts => 1, available_at => '2020-01-01 00:00:00+00') \gset
SELECT id AS now1 FROM txoutbox.enqueue('m', '{}', message_key => 'now1', max_attempts => 3, available_at => '2020-01-01 00:00:00+00') \gset
SELECT id AS pend FROM txoutbox.enqueue('m', '{}', message_key => 'pend', max_attempts => 3, available_at => '2030-01-01 00:00:00+00') \gset
SELECT message_key, attempt_count FROM txoutbox.claim('w1', 100, as_of => '2020-01-01 00:01:00+00');

-- mark_succeeded with the holding consumer and an explicit published_at:
-- succeeded, published_at and updated_at set, lease cleared, attempts kept.
SELECT message_key, status, attempt_count, locked_by, locked_at,
       published_at = '2020-01-01 00:01:30+00' AS published_at_given,
       updated_at = '2020-01-01 00:01:30+00' AS updated_at_given,
       last_error
  FROM txoutbox.mark_succeeded(:'ok1', published_at => '2020-01-01 00:01:30+00', consumer => 'w1');
-- mark_succeeded without consumer: any holder; published_at defaults to now()
SELECT message_key, status, locked_by, published_at = now() AS published_now
  FROM txoutbox.mark_succeeded(:'ok2');
-- the table holds what was returned
SELECT message_key, status, attempt_count, locked_by, published_at IS NOT NULL AS published
  FROM txoutbox.messages WHERE id IN (:'ok1', :'ok2') ORDER BY message_key;

-- mark_failed with next_attempt_at and attempts left: retrying, due at
-- next_attempt_at, with the reason; updated_at is failed_at.
SELECT message_key, status, attempt_count, locked_by, locked_at,
       available_at = '2020-01-01 00:05:00+00' AS due_at_next_attempt,
       updated_at = '2020-01-01 00:01:40+00' AS updated_at_failed_at,
       last_error, published_at
  FROM txoutbox.mark_failed(:'re1', 'connection refused', next_attempt_at => '2020-01-01 00:05:00+00',
                            failed_at => '2020-01-01 00:01:40+00', consumer => 'w1');
-- mark_failed with next_attempt_at but no attempt left (1 of 1): failed
SELECT message_key, status, attempt_count, max_attempts, locked_by, last_error
  FROM txoutbox.mark_failed(:'one', 'still down', next_attempt_at => '2020-01-01 00:05:00+00', consumer => 'w1');
-- mark_failed without next_attempt_at: failed although attempts remain;
-- failed_at defaults to now()
SELECT message_key, status, attempt_count, max_attempts, locked_by, last_error,
       updated_at = now() AS updated_now
  FROM txoutbox.mark_failed(:'now1', 'permanent: 400 bad request');

-- The retrying message goes round until its attempts are used up.
SELECT count(*) FROM txoutbox.claim('w2', 100, as_of => '2020-01-01 00:04:00+00');
SELECT message_key, status, attempt_count, locked_by
  FROM txoutbox.claim('w2', 100, as_of => '2020-01-01 00:05:00+00');
SELECT message_key, status, attempt_count, last_error
  FROM txoutbox.mark_failed(:'re1', 'timeout 2', next_attempt_at => '2020-01-01 00:10:00+00', consumer => 'w2');
SELECT message_key, status, attempt_count, locked_by
  FROM txoutbox.claim('w3', 100, as_of => '2020-01-01 00:10:00+00');
-- attempt 3 of 3 failed: failed, even though a next attempt was asked for
SELECT message_key, status, attempt_count, max_attempts, last_error
  FROM txoutbox.mark_failed(:'re1', 'timeout 3', next_attempt_at => '2020-01-01 00:20:00+00', consumer => 'w3');
SELECT count(*) FROM txoutbox.claim('w4', 100, as_of => '2020-01-01 01:00:00+00');

-- The consumer check: a message held by w5 cannot be marked by w1; the
-- error names the id, the status and the holder, and changes nothing.
SELECT id AS held FROM txoutbox.enqueue('m', '{}', message_key => 'held', available_at => '2020-01-01 00:00:00+00') \gset
SELECT message_key, locked_by FROM txoutbox.claim('w5', 100, as_of => '2020-01-01 01:00:00+00');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L, consumer => %L)', :'held', 'w1'), :'held');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_failed(%L, %L, next_attempt_at => now(), consumer => %L)', :'held', 'x', 'w1'), :'held');
-- a lease that was taken over: w6 claims after w5's lease ended; w5 is refused
SELECT message_key, attempt_count, locked_by FROM txoutbox.claim('w6', 100, as_of => '2020-01-01 02:00:00+00');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L, consumer => %L)', :'held', 'w5'), :'held');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_failed(%L, %L, consumer => %L)', :'held', 'late', 'w5'), :'held');
-- the holder may mark it
SELECT message_key, status, locked_by FROM txoutbox.mark_succeeded(:'held', consumer => 'w6');
-- and a second mark is refused: the message is no longer processing
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L, consumer => %L)', :'held', 'w6'), :'held');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.mark_succeeded(%L)', :'held'), :'held');

-- replay: failed back to pending, attempts reset, available now, lease and
-- published_at cleared; the reason of the last failure is kept.
SELECT message_key, status, attempt_count, max_attempts, locked_by, locked_at, published_at,
       available_at = now() AS available_now, updated_at = now() AS updated_now, last_error
  FROM txoutbox.replay(:'re1');
SELECT message_key, status, attempt_count FROM txoutbox.replay(:'one');
-- a replayed message is claimed again, with its attempts counted from 1
SELECT message_key, status, attempt_count, max_attempts FROM txoutbox.claim('w7', 100);
SELECT message_key, status FROM txoutbox.mark_succeeded(:'re1', consumer => 'w7');
-- and a replayed message with max_attempts 1 can fail again at once
SELECT message_key, status, attempt_count FROM txoutbox.mark_failed(:'one', 'again', next_attempt_at => now(), consumer => 'w7');

-- Only failed messages can be replayed.
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.replay(%L)', :'pend'), :'pend');
SELECT pg_temp.try_unchanged(format('SELECT txoutbox.replay(%L)', :'ok1'), :'ok1');

SELECT message_key, status, attempt_count FROM txoutbox.messages ORDER BY message_key;
TRUNCATE txoutbox.messages;

-- A claim later in the transaction that made a message available in the
-- past (here by replay) finds it: the session's low-water mark, left by the
-- transaction's first claim, is forgotten at once, not at commit.
SELECT id AS lw FROM txoutbox.enqueue('lw.topic', '{}', message_key => 'lw', max_attempts => 1) \gset
SELECT count(*) AS claimed FROM txoutbox.claim('w8', 10, topic => 'lw.topic');
SELECT status FROM txoutbox.mark_failed(:'lw', 'boom', consumer => 'w8');
BEGIN;
SELECT count(*) AS claimed_before_replay FROM txoutbox.claim('w8', 10, topic => 'lw.topic');
SELECT status FROM txoutbox.replay(:'lw');
SELECT message_key, status, attempt_count FROM txoutbox.claim('w8', 10, topic => 'lw.topic');
COMMIT;
TRUNCATE txoutbox.messages;
