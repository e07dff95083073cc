-- core_claim: claim() order, limits, topic filter, lease, takeover of
-- expired leases and failing of exhausted ones.  Times are explicit
-- (available_at, as_of, lock_until) so the output is deterministic; message
-- keys label the messages.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too: the extension is created by core_enqueue otherwise
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;

-- Six messages.  b and d share an available_at: the older id (b) goes first.
SELECT message_key FROM txoutbox.enqueue('orders.created', '{}', message_key => 'c', available_at => '2020-01-01 00:00:03+00');
SELECT message_key FROM txoutbox.enqueue('orders.created', '{}', message_key => 'a', available_at => '2020-01-01 00:00:01+00');
SELECT message_key FROM txoutbox.enqueue('orders.created', '{}', message_key => 'b', available_at => '2020-01-01 00:00:02+00');
SELECT message_key FROM txoutbox.enqueue('orders.created', '{}', message_key => 'd', available_at => '2020-01-01 00:00:02+00');
SELECT message_key FROM txoutbox.enqueue('billing.paid', '{}', message_key => 'x', available_at => '2020-01-01 00:00:01.5+00');
SELECT message_key FROM txoutbox.enqueue('orders.created', '{}', message_key => 'f', available_at => '2020-01-01 01:00:00+00');

-- max_messages 3 of the five due: oldest available_at first, whatever the topic.
-- The claim sets processing, locked_by, locked_at = as_of, attempt_count + 1
-- and available_at = as_of + txoutbox.lock_timeout (1 minute by default).
SHOW txoutbox.lock_timeout;
SELECT message_key, topic, status, attempt_count, locked_by,
       locked_at = '2020-01-01 00:01:00+00' AS locked_at_as_of,
       available_at = '2020-01-01 00:01:00+00'::timestamptz + interval '1 minute' AS lease_one_minute
  FROM txoutbox.claim('w1', 3, as_of => '2020-01-01 00:01:00+00');
-- the claim is in the table
SELECT message_key, status, attempt_count, locked_by FROM txoutbox.messages ORDER BY message_key;

-- Claimed messages are not claimed again while their lease runs: billing.paid
-- has nothing left.
SELECT message_key FROM txoutbox.claim('w2', 10, topic => 'billing.paid', as_of => '2020-01-01 00:01:00+00');
-- Topic filter, max_messages 1 and an explicit lock_until.
SELECT message_key, topic, locked_by,
       available_at = '2020-01-01 00:30:00+00' AS lease_is_lock_until
  FROM txoutbox.claim('w2', 1, topic => 'orders.created', lock_until => '2020-01-01 00:30:00+00',
                      as_of => '2020-01-01 00:01:00+00');
-- A topic with no messages.
SELECT message_key FROM txoutbox.claim('w2', 10, topic => 'nothing.here', as_of => '2020-01-01 00:01:00+00');
-- The default lease follows txoutbox.lock_timeout.  f is not due yet.
SET txoutbox.lock_timeout = '5s';
SELECT message_key, locked_by,
       available_at = '2020-01-01 00:01:00+00'::timestamptz + interval '5 seconds' AS lease_five_seconds
  FROM txoutbox.claim('w3', 100, as_of => '2020-01-01 00:01:00+00');
RESET txoutbox.lock_timeout;
-- Nothing is due now.
SELECT count(*) FROM txoutbox.claim('w4', 100, as_of => '2020-01-01 00:01:00+00');

-- Expired leases are taken over, oldest lease end first, then id: c's lease
-- ended at 00:01:05; a, b, x ended at 00:02:00 (a, b, x in id order); d is
-- leased until 00:30 and f is due at 01:00.
SELECT message_key, status, attempt_count, locked_by,
       locked_at = '2020-01-01 00:02:00+00' AS locked_at_as_of
  FROM txoutbox.claim('w5', 100, as_of => '2020-01-01 00:02:00+00');
SELECT message_key, status, attempt_count, locked_by FROM txoutbox.messages ORDER BY message_key;
-- At 01:00 every lease has ended and f is due: c, a, b, x (leases of w5
-- ended at 00:03), then d (00:30), then f (01:00).
SELECT message_key, attempt_count, locked_by
  FROM txoutbox.claim('w6', 100, as_of => '2020-01-01 01:00:00+00');

-- An expired lease with no attempts left: the message becomes failed with a
-- reason that says so, and is not returned.
TRUNCATE txoutbox.messages;
SELECT message_key FROM txoutbox.enqueue('lease', '{}', message_key => 'one', max_attempts => 1, available_at => '2020-01-01 00:00:00+00');
SELECT message_key FROM txoutbox.enqueue('lease', '{}', message_key => 'two', max_attempts => 2, available_at => '2020-01-01 00:00:00+00');
SELECT message_key, attempt_count, max_attempts
  FROM txoutbox.claim('w1', 10, as_of => '2020-01-01 00:01:00+00');
-- at 00:10 both leases have ended: two is taken over (attempt 2 of 2), one is failed
SELECT message_key, attempt_count, locked_by
  FROM txoutbox.claim('w2', 10, as_of => '2020-01-01 00:10:00+00');
SELECT message_key, status, attempt_count, locked_by, locked_at IS NULL AS unlocked, last_error
  FROM txoutbox.messages ORDER BY message_key;
-- at 00:20 two's lease has ended too, with no attempt left
SELECT count(*) FROM txoutbox.claim('w3', 10, as_of => '2020-01-01 00:20:00+00');
SELECT message_key, status, attempt_count, locked_by, last_error
  FROM txoutbox.messages ORDER BY message_key;
-- failed messages are never claimed
SELECT count(*) FROM txoutbox.claim('w4', 10, as_of => '2100-01-01 00:00:00+00');

-- Retrying messages are claimed when due, succeeded ones never.
TRUNCATE txoutbox.messages;
SELECT id AS r_id FROM txoutbox.enqueue('retry', '{}', message_key => 'r', available_at => '2020-01-01 00:00:00+00') \gset
SELECT id AS s_id FROM txoutbox.enqueue('retry', '{}', message_key => 's', available_at => '2020-01-01 00:00:00+00') \gset
SELECT message_key FROM txoutbox.claim('w1', 10, as_of => '2020-01-01 00:01:00+00');
SELECT status FROM txoutbox.mark_failed(:'r_id', 'boom', next_attempt_at => '2020-01-01 00:05:00+00');
SELECT status FROM txoutbox.mark_succeeded(:'s_id');
SELECT count(*) FROM txoutbox.claim('w2', 10, as_of => '2020-01-01 00:04:59+00');
SELECT message_key, status, attempt_count, locked_by
  FROM txoutbox.claim('w2', 10, as_of => '2020-01-01 00:05:00+00');
SELECT message_key, status FROM txoutbox.messages ORDER BY message_key;

-- Defaults: as_of is now(), the lease is now() + lock_timeout.  A message
-- enqueued in an earlier transaction is due.
TRUNCATE txoutbox.messages;
SELECT message_key FROM txoutbox.enqueue('defaults', '{}', message_key => 'now');
SELECT message_key FROM txoutbox.enqueue('defaults', '{}', message_key => 'later', available_at => now() + interval '1 hour');
SELECT message_key, status, attempt_count, locked_by,
       locked_at = now() AS locked_now,
       available_at = now() + interval '1 minute' AS lease_one_minute
  FROM txoutbox.claim('w-default');

-- max_messages at its bounds: 1 and 10000.
TRUNCATE txoutbox.messages;
SELECT count(*) FROM generate_series(1, 5) g,
       LATERAL txoutbox.enqueue('bounds', pg_catalog.to_jsonb(g), available_at => '2020-01-01 00:00:00+00');
SELECT count(*) FROM txoutbox.claim('w1', 1, as_of => '2020-01-01 00:01:00+00');
SELECT count(*) FROM txoutbox.claim('w1', 10000, as_of => '2020-01-01 00:01:00+00');
SELECT count(*) FILTER (WHERE status = 'processing') AS processing, count(*) AS total
  FROM txoutbox.messages;
TRUNCATE txoutbox.messages;
