-- route_policy: delivery-policy fields that every route's config may carry,
--   "ordered": true|false, "max_attempts": n (overrides the message's),
--   "retry_base_delay_ms", "retry_max_delay_ms" (override the backoff
--   settings), and the function publisher's "timeout_ms";
-- validated by add_route() and applied when the dispatcher records a failure
-- (here through dispatch(); the worker side is in test/t/071_route_policy.pl).
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
RESET client_min_messages;
TRUNCATE txoutbox.messages, txoutbox.skipped_messages;
DELETE FROM txoutbox.routes;

\set ECHO none
\i test/regress_helpers.sql
\set ECHO all
CREATE FUNCTION public.pol_ok(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.05); END $$;
CREATE FUNCTION public.pol_fail(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'downstream is down'; END $$;
CREATE FUNCTION public.pol_gone(m txoutbox.messages) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;

-- 1. Accepted by every publisher, stored as given ---------------------------
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('pol.notify', 'notify',
    '{"channel": "pol", "ordered": true, "max_attempts": 3, "retry_base_delay_ms": 10, "retry_max_delay_ms": 20}');
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('pol.http', 'http',
    '{"url": "http://127.0.0.1:9/hook", "ordered": false, "max_attempts": 1, "retry_base_delay_ms": 2147483647, "retry_max_delay_ms": 1}');
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('pol.fn', 'function',
    '{"function": "public.pol_ok", "timeout_ms": 1, "max_attempts": 1000000, "ordered": null}');
SELECT topic_pattern, publisher, config FROM txoutbox.add_route('pol.fn.max', 'function',
    '{"function": "public.pol_ok", "timeout_ms": 3600000, "max_attempts": null, "retry_base_delay_ms": null}');

-- 2. Refused when the route is added, and nothing is inserted ---------------
SELECT count(*) AS routes_before FROM txoutbox.routes \gset
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"ordered": "yes"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"ordered": 1}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"ordered": [true]}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"max_attempts": 0}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"max_attempts": -1}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"max_attempts": 1000001}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"max_attempts": 2.5}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"max_attempts": "3"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"max_attempts": true}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"retry_base_delay_ms": 0}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"retry_base_delay_ms": 2147483648}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"retry_base_delay_ms": "1s"}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"retry_max_delay_ms": 0}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"retry_max_delay_ms": 1.5}')$$);
-- timeout_ms is the function publisher's (and http's own), not notify's
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"timeout_ms": 100}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'function', '{"function": "public.pol_ok", "timeout_ms": 0}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'function', '{"function": "public.pol_ok", "timeout_ms": 3600001}')$$);
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'function', '{"function": "public.pol_ok", "timeout_ms": "5s"}')$$);
-- a policy field still cannot hide a typo next to it
SELECT pg_temp.try($$SELECT txoutbox.add_route('x', 'notify', '{"ordered": true, "max_attempt": 3}')$$);
SELECT count(*) = :routes_before AS nothing_inserted FROM txoutbox.routes;

DELETE FROM txoutbox.routes;

-- 3. max_attempts: the route's, not the message's, decides when a failing
-- message is failed for good -------------------------------------------------
SELECT topic_pattern FROM txoutbox.add_route('pol.two', 'function',
    '{"function": "public.pol_fail", "max_attempts": 2}');
SELECT topic_pattern FROM txoutbox.add_route('pol.four', 'function',
    '{"function": "public.pol_fail", "max_attempts": 4}');
SELECT topic_pattern FROM txoutbox.add_route('pol.own', 'function',
    '{"function": "public.pol_fail"}');
SELECT count(*) FROM txoutbox.enqueue('pol.two', '{}', message_key => 'two', max_attempts => 10);
SELECT count(*) FROM txoutbox.enqueue('pol.four', '{}', message_key => 'four', max_attempts => 1);
SELECT count(*) FROM txoutbox.enqueue('pol.own', '{}', message_key => 'own', max_attempts => 3);
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
SELECT * FROM txoutbox.dispatch(retry_delay => '0');
-- two: failed after 2 attempts (its own max_attempts of 10 notwithstanding);
-- four: 4 attempts (its own 1 notwithstanding); own: its own 3
SELECT message_key, status, attempt_count, max_attempts, last_error
  FROM txoutbox.messages ORDER BY message_key;
-- replayed, the route's limit applies again from the start
SELECT r.status, r.attempt_count FROM txoutbox.messages m, LATERAL txoutbox.replay(m.id) r
 WHERE m.message_key = 'two';
SELECT * FROM txoutbox.dispatch(topic => 'pol.two', retry_delay => '0');
SELECT * FROM txoutbox.dispatch(topic => 'pol.two', retry_delay => '0');
SELECT message_key, status, attempt_count FROM txoutbox.messages WHERE message_key = 'two';

-- 4. The route's backoff, instead of txoutbox.retry_base_delay and
-- txoutbox.retry_max_delay (exponential, at most 20% jitter taken off, never
-- below the base, capped by the max) -----------------------------------------
TRUNCATE txoutbox.messages;
SELECT topic_pattern FROM txoutbox.add_route('pol.backoff', 'function',
    '{"function": "public.pol_fail", "retry_base_delay_ms": 4000, "retry_max_delay_ms": 6000}');
SELECT count(*) FROM txoutbox.enqueue('pol.backoff', '{}', message_key => 'b');
SELECT count(*) FROM txoutbox.enqueue('pol.own', '{}', message_key => 'own');
SET txoutbox.retry_base_delay = '1h';
SET txoutbox.retry_max_delay = '2h';
CREATE TEMP TABLE delays (round int, message_key text, attempt int, delay interval);
CREATE FUNCTION pg_temp.round(n int) RETURNS void LANGUAGE sql AS $$
    SELECT count(*) FROM txoutbox.dispatch();
    INSERT INTO delays SELECT n, message_key, attempt_count, available_at - updated_at
      FROM txoutbox.messages WHERE status = 'retrying';
    -- due again now
    UPDATE txoutbox.messages SET available_at = now() WHERE status = 'retrying';
$$;
SELECT pg_temp.round(1);
SELECT pg_temp.round(2);
SELECT pg_temp.round(3);
RESET txoutbox.retry_base_delay;
RESET txoutbox.retry_max_delay;
-- b: about 4 s after attempt 1, then about 6 s (8 s capped at 6 s);
-- own: the settings, about 1 h, then about 2 h
SELECT round, message_key, attempt,
       CASE message_key
           WHEN 'b' THEN CASE WHEN attempt = 1 THEN delay BETWEEN '3.2 s' AND '4 s'
                              ELSE delay BETWEEN '4.8 s' AND '6 s' END
           ELSE CASE WHEN attempt = 1 THEN delay BETWEEN '48 min' AND '1 h'
                     ELSE delay BETWEEN '96 min' AND '2 h' END
       END AS delay_as_expected
  FROM delays ORDER BY round, message_key;
-- dispatch()'s retry_delay, given explicitly, is used as it is
SELECT * FROM txoutbox.dispatch(topic => 'pol.backoff', retry_delay => '1 hour');
SELECT message_key, available_at - updated_at AS delay
  FROM txoutbox.messages WHERE message_key = 'b';

-- 5. A route whose config no longer works (its function was dropped) keeps
-- its messages on the normal backoff, not retried at once -------------------
TRUNCATE txoutbox.messages;
SELECT topic_pattern FROM txoutbox.add_route('pol.gone', 'function', '{"function": "public.pol_gone"}');
SELECT topic_pattern FROM txoutbox.add_route('pol.gone.policy', 'function',
    '{"function": "public.pol_gone", "max_attempts": 2, "retry_base_delay_ms": 5000}');
DROP FUNCTION public.pol_gone(txoutbox.messages);
SELECT count(*) FROM txoutbox.enqueue('pol.gone', '{}', message_key => 'gone', max_attempts => 5);
SELECT count(*) FROM txoutbox.enqueue('pol.gone.policy', '{}', message_key => 'gone.policy', max_attempts => 5);
SET txoutbox.retry_base_delay = '10min';
SELECT * FROM txoutbox.dispatch();
RESET txoutbox.retry_base_delay;
SELECT message_key, status, attempt_count,
       available_at - updated_at >= interval '4 seconds' AS not_retried_at_once,
       last_error LIKE '%is misconfigured%' AS says_why
  FROM txoutbox.messages ORDER BY message_key;

-- 6. timeout_ms bounds the call in the worker only; dispatch() runs under the
-- caller's statement_timeout ---------------------------------------------------
TRUNCATE txoutbox.messages;
SELECT topic_pattern FROM txoutbox.add_route('pol.slow', 'function',
    '{"function": "public.pol_ok", "timeout_ms": 1}');
SELECT count(*) FROM txoutbox.enqueue('pol.slow', '{}', message_key => 'slow');
SELECT * FROM txoutbox.dispatch();
SELECT message_key, status, attempt_count FROM txoutbox.messages;

-- 7. A lease that ends with the route's attempts used up fails the message,
-- as a recorded failure would ------------------------------------------------
TRUNCATE txoutbox.messages;
SELECT count(*) FROM txoutbox.enqueue('pol.two', '{}', message_key => 'lease', max_attempts => 10,
                                      available_at => '2020-01-01 00:00:00+00');
SELECT message_key, attempt_count FROM txoutbox.claim('c1', as_of => '2020-01-01 00:01:00+00',
                                                     lock_until => '2020-01-01 00:02:00+00');
SELECT message_key, attempt_count FROM txoutbox.claim('c2', as_of => '2020-01-01 00:03:00+00',
                                                     lock_until => '2020-01-01 00:04:00+00');
-- attempt 2 of 2 was lost with its lease: nothing to claim, the message failed
SELECT message_key, attempt_count FROM txoutbox.claim('c3', as_of => '2020-01-01 00:05:00+00');
SELECT message_key, status, attempt_count, last_error LIKE '%lease%expired%' AS says_why
  FROM txoutbox.messages;

TRUNCATE txoutbox.messages;
DELETE FROM txoutbox.routes;
DROP FUNCTION public.pol_ok(txoutbox.messages);
DROP FUNCTION public.pol_fail(txoutbox.messages);
