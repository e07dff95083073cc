-- time_range: a time the C code computes from a caller's time or interval
-- (claim's as_of + txoutbox.lock_timeout, dispatch()'s now + retry_delay)
-- must be one a timestamptz can hold.  One past the range (or an overflow)
-- is refused with 22008 and changes nothing, so get() and list() can print
-- every row afterwards.  Times the caller gives as they are (lock_until,
-- claim_lock_to, next_attempt_at, available_at) are timestamptz values
-- already, valid by construction.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too: the extension is created by core_enqueue otherwise
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
SET timezone = 'UTC';

\set ECHO none
\i test/regress_helpers.sql
\set ECHO all

-- the last minute a timestamptz can hold, and a message available then
SELECT id AS late FROM txoutbox.enqueue('tr.claim', '{}', message_key => 'late',
                                        available_at => '294276-12-31 23:59:00+00') \gset
SHOW txoutbox.lock_timeout;

-- claim(as_of) whose default lease end (as_of + 1 minute) is past the range
SELECT pg_temp.try_unchanged($$SELECT * FROM txoutbox.claim('tr', as_of => '294276-12-31 23:59:00+00')$$, :'late');
SELECT pg_temp.try_unchanged($$SELECT * FROM txoutbox.claim('tr', as_of => '294276-12-31 23:59:30+00', topic => 'tr.claim')$$, :'late');
-- with an explicit lock_until in range, the same as_of is fine
SELECT message_key, status, attempt_count, available_at
  FROM txoutbox.claim('tr', as_of => '294276-12-31 23:59:00+00',
                      lock_until => '294276-12-31 23:59:59+00');
-- and the default lease one minute earlier is the last one that fits
SELECT status FROM txoutbox.mark_failed(:'late', 'again', next_attempt_at => '294276-12-31 23:58:00+00');
SELECT message_key, status, attempt_count, available_at
  FROM txoutbox.claim('tr', as_of => '294276-12-31 23:58:59.999999+00');
SELECT message_key, status, available_at FROM txoutbox.get(:'late');

-- dispatch(retry_delay) through a route whose function always raises
CREATE FUNCTION public.tr_refuse(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'refused';
END
$$;
SELECT topic_pattern FROM txoutbox.add_route('tr.fail', 'function', '{"function": "public.tr_refuse"}');
SELECT id AS fail FROM txoutbox.enqueue('tr.fail', '{}', message_key => 'fail') \gset
-- now + retry_delay past the range (no overflow of the delay itself)
SELECT pg_temp.try_unchanged($$SELECT * FROM txoutbox.dispatch(topic => 'tr.fail', retry_delay => interval '2562047000 hours')$$, :'fail');
-- the delay itself overflows a 64-bit count of microseconds
SELECT pg_temp.try_unchanged($$SELECT * FROM txoutbox.dispatch(topic => 'tr.fail', retry_delay => interval '36500 days 2562047000 hours')$$, :'fail');
-- a delay well inside the range works: retrying, due in 100 years' time
SELECT * FROM txoutbox.dispatch(topic => 'tr.fail', retry_delay => interval '36500 days');
SELECT message_key, status, attempt_count, last_error,
       available_at BETWEEN now() + interval '36499 days' AND now() + interval '36501 days' AS due_in_100_years
  FROM txoutbox.get(:'fail');

-- every row prints
SELECT message_key, status, attempt_count, available_at > '2100-01-01' AS far
  FROM txoutbox.list(max_messages => 10) ORDER BY message_key;

DROP FUNCTION public.tr_refuse(txoutbox.messages);
TRUNCATE txoutbox.messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
