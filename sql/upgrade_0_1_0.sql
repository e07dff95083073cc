-- upgrade_0_1_0: the first suite of the upgrade pass (make installcheck runs
-- every suite a second time, on an extension updated from 0.1.0).  Creates
-- the extension at 0.1.0, gives it messages in every status, a skipped one,
-- routes and grant sets, runs ALTER EXTENSION txoutbox UPDATE, and checks
-- that every row was kept, column for column, and still moves through the
-- state machine.  It ends with empty tables and route ids starting at 1
-- again, as after CREATE EXTENSION, for the suites that follow.
-- (upgrade_catalog then compares the objects with a fresh install.)
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP FUNCTION IF EXISTS public.txo_up_publish(txoutbox.messages);
DROP TABLE IF EXISTS public.txo_up_messages, public.txo_up_routes, public.txo_up_skipped,
                     public.txo_up_published;
DROP EXTENSION IF EXISTS txoutbox;
DO $$
DECLARE r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'txo\_up\_%' LOOP
        EXECUTE format('DROP OWNED BY %I CASCADE', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
RESET client_min_messages;
\set ECHO none
\i test/regress_helpers.sql
\set ECHO all

CREATE EXTENSION txoutbox VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'txoutbox';

-- ---------------------------------------------------------------------------
-- 0.1.0 with something in every table
-- ---------------------------------------------------------------------------
CREATE ROLE txo_up_producer;
CREATE ROLE txo_up_consumer;
CREATE ROLE txo_up_admin;
SELECT txoutbox.grant_role('txo_up_producer', 'producer');
SELECT txoutbox.grant_role('txo_up_consumer', 'consumer');
SELECT txoutbox.grant_role('txo_up_admin', 'admin');

-- routes: exact, prefix, ordered, a function route, a disabled one, and a
-- removed one (the ids have a gap, and the next id is past it)
CREATE TABLE public.txo_up_published (id uuid, topic text);
CREATE FUNCTION public.txo_up_publish(m txoutbox.messages) RETURNS void
LANGUAGE sql AS $$ INSERT INTO public.txo_up_published VALUES (m.id, m.topic) $$;
SELECT id, topic_pattern, publisher, config FROM txoutbox.add_route('up.notify.*', 'notify', '{"channel": "txo_up"}');
SELECT id, topic_pattern, publisher, config FROM txoutbox.add_route('up.notify.exact', 'notify');
SELECT id, topic_pattern, publisher, config FROM txoutbox.add_route('up.ordered', 'notify', '{"ordered": true}');
SELECT id, topic_pattern, publisher, config FROM txoutbox.add_route('up.fn', 'function', '{"function": "public.txo_up_publish"}');
SELECT id, topic_pattern, publisher, config FROM txoutbox.add_route('up.off', 'notify');
SELECT id, topic_pattern, publisher, config FROM txoutbox.add_route('up.gone', 'notify');
UPDATE txoutbox.routes SET enabled = false WHERE topic_pattern = 'up.off';
SELECT txoutbox.remove_route(id) FROM txoutbox.routes WHERE topic_pattern = 'up.gone';

-- A message is named by its payload's "n"; each has a topic of its own
-- (claim_one below claims by topic), but for the four of the ordered route.
-- Every one is due at 2020-01-01 00:00 (the delayed one in 2100), with
-- every optional field set.
SELECT count(*) FROM (VALUES
    ('pending',       'up.notify.pending',   NULL, '2020-01-01 00:00:00+00'),
    ('delayed',       'up.notify.delayed',   NULL, '2100-01-01 00:00:00+00'),
    ('leased',        'up.notify.leased',    NULL, '2020-01-01 00:00:00+00'),
    ('retrying',      'up.notify.retrying',  NULL, '2020-01-01 00:00:00+00'),
    ('succeeded',     'up.notify.succeeded', NULL, '2020-01-01 00:00:00+00'),
    ('succeeded_fn',  'up.fn',               NULL, '2020-01-01 00:00:00+00'),
    ('failed',        'up.notify.exact',     NULL, '2020-01-01 00:00:00+00'),
    ('skipped',       'up.ordered',          'k1', '2020-01-01 00:00:00+00'),
    ('after_skipped', 'up.ordered',          'k1', '2020-01-01 00:00:00+00'),
    ('blocking',      'up.ordered',          'k2', '2020-01-01 00:00:00+00'),
    ('blocked',       'up.ordered',          'k2', '2020-01-01 00:00:00+00'),
    ('route_off',     'up.off',              NULL, '2020-01-01 00:00:00+00'),
    ('unrouted',      'up.nowhere',          NULL, '2020-01-01 00:00:00+00')) v(n, topic, key, due),
    LATERAL txoutbox.enqueue(v.topic, jsonb_build_object('n', v.n), message_key => v.key,
                             headers => jsonb_build_object('h', v.n), correlation_id => 'corr-' || v.n,
                             tenant_id => 'tenant-a', org_id => 'org-1', available_at => v.due::timestamptz,
                             max_attempts => 3) e;
CREATE FUNCTION pg_temp.id_of(n text) RETURNS uuid
LANGUAGE sql AS $$ SELECT id FROM txoutbox.messages WHERE payload ->> 'n' = n $$;
-- claim one message (n) at as_of, leased until lock_until, by consumer
CREATE FUNCTION pg_temp.claim_one(n text, as_of timestamptz, lock_until timestamptz,
                                  consumer text DEFAULT 'up-consumer')
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    m txoutbox.messages;
    got text;
BEGIN
    FOR m IN SELECT * FROM txoutbox.claim(consumer, 100, topic => (SELECT topic FROM txoutbox.messages
                                                                   WHERE id = pg_temp.id_of(n)),
                                          lock_until => lock_until, as_of => as_of) LOOP
        got := concat_ws(' ', got, (m.payload ->> 'n') || '@' || m.attempt_count || ':' || m.locked_by);
    END LOOP;
    RETURN coalesce(got, '(none)');
END
$$;
-- claim, then set each message's status by hand through the marks
SELECT pg_temp.claim_one('retrying', '2020-01-01 00:01:00+00', '2020-01-01 00:02:00+00');
SELECT status FROM txoutbox.mark_failed(pg_temp.id_of('retrying'), 'timeout', next_attempt_at => '2020-01-01 00:10:00+00',
                                        failed_at => '2020-01-01 00:01:30+00');
SELECT pg_temp.claim_one('succeeded', '2020-01-01 00:01:00+00', '2020-01-01 00:02:00+00');
SELECT status FROM txoutbox.mark_succeeded(pg_temp.id_of('succeeded'), published_at => '2020-01-01 00:01:10+00');
SELECT pg_temp.claim_one('succeeded_fn', '2020-01-01 00:01:00+00', '2020-01-01 00:02:00+00');
SELECT status FROM txoutbox.mark_succeeded(pg_temp.id_of('succeeded_fn'), published_at => '2020-01-01 00:01:20+00');
SELECT pg_temp.claim_one('failed', '2020-01-01 00:01:00+00', '2020-01-01 00:02:00+00');
SELECT status FROM txoutbox.mark_failed(pg_temp.id_of('failed'), 'gone for good', failed_at => '2020-01-01 00:01:40+00');
-- the ordered keys' heads fail; k1's is skipped
SELECT pg_temp.claim_one('skipped', '2020-01-01 00:01:00+00', '2020-01-01 00:02:00+00');
SELECT status FROM txoutbox.mark_failed(pg_temp.id_of('skipped'), 'bad k1', failed_at => '2020-01-01 00:01:50+00');
SELECT status FROM txoutbox.mark_failed(pg_temp.id_of('blocking'), 'bad k2', failed_at => '2020-01-01 00:01:50+00');
SELECT status FROM txoutbox.skip(pg_temp.id_of('skipped'));
-- leased last: processing, leased by up-consumer until 00:05
SELECT pg_temp.claim_one('leased', '2020-01-01 00:03:00+00', '2020-01-01 00:05:00+00');

SELECT payload ->> 'n' AS n, status, attempt_count, locked_by, last_error
  FROM txoutbox.messages ORDER BY id;
SELECT topic, status, messages, publisher, unrouted, blocked_keys
  FROM txoutbox.stats ORDER BY topic, status;

-- what must be kept: every row as it is now
CREATE TABLE public.txo_up_messages AS SELECT * FROM txoutbox.messages;
CREATE TABLE public.txo_up_routes AS SELECT * FROM txoutbox.routes;
CREATE TABLE public.txo_up_skipped AS SELECT * FROM txoutbox.skipped_messages;
SELECT last_value AS seq_last, is_called AS seq_called FROM txoutbox.routes_id_seq \gset

-- ---------------------------------------------------------------------------
-- The update
-- ---------------------------------------------------------------------------
ALTER EXTENSION txoutbox UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'txoutbox';

-- Every message, skipped message and route is there, with every column as
-- it was (the columns of 0.1.0; a later version may add some).
CREATE FUNCTION pg_temp.changed(before jsonb, after jsonb) RETURNS text[]
LANGUAGE sql AS $$
    SELECT array_agg(e.key ORDER BY e.key) FROM jsonb_each(before) e
     WHERE after IS NULL OR after -> e.key IS DISTINCT FROM e.value
$$;
SELECT count(*) AS messages_before, (SELECT count(*) FROM txoutbox.messages) AS messages_after
  FROM public.txo_up_messages;
SELECT b.payload ->> 'n' AS n, pg_temp.changed(to_jsonb(b), to_jsonb(m)) AS changed_columns
  FROM public.txo_up_messages b LEFT JOIN txoutbox.messages m ON m.id = b.id
 WHERE pg_temp.changed(to_jsonb(b), to_jsonb(m)) IS NOT NULL;
SELECT count(*) AS routes_before, (SELECT count(*) FROM txoutbox.routes) AS routes_after
  FROM public.txo_up_routes;
SELECT b.topic_pattern, pg_temp.changed(to_jsonb(b), to_jsonb(r)) AS changed_columns
  FROM public.txo_up_routes b LEFT JOIN txoutbox.routes r ON r.id = b.id
 WHERE pg_temp.changed(to_jsonb(b), to_jsonb(r)) IS NOT NULL;
SELECT count(*) AS skipped_before, (SELECT count(*) FROM txoutbox.skipped_messages) AS skipped_after
  FROM public.txo_up_skipped;
SELECT b.id = pg_temp.id_of('skipped') AS is_skipped_message, pg_temp.changed(to_jsonb(b), to_jsonb(k)) AS changed_columns
  FROM public.txo_up_skipped b LEFT JOIN txoutbox.skipped_messages k ON k.id = b.id
 WHERE pg_temp.changed(to_jsonb(b), to_jsonb(k)) IS NOT NULL;
SELECT last_value = :'seq_last' AND is_called = :'seq_called' AS route_ids_go_on_as_before
  FROM txoutbox.routes_id_seq;
SELECT topic, status, messages, publisher, unrouted, blocked_keys
  FROM txoutbox.stats ORDER BY topic, status;

-- The grant sets are kept (enqueue, with two more arguments, is the same
-- function); the consumer and admin sets' new functions come with
-- grant_role() (the update's WARNING above named the roles).
SELECT r AS role, has_function_privilege(r, 'txoutbox.enqueue(text,jsonb,text,jsonb,text,text,text,timestamptz,integer,text,timestamptz)', 'EXECUTE') AS enqueue,
       has_function_privilege(r, 'txoutbox.claim(text,integer,text,timestamptz,timestamptz)', 'EXECUTE') AS claim,
       has_function_privilege(r, 'txoutbox.add_route(text,text,jsonb)', 'EXECUTE') AS add_route,
       has_function_privilege(r, 'txoutbox.notified_since(timestamptz,text,text,text,text,integer,uuid)', 'EXECUTE') AS notified_since
  FROM unnest(ARRAY['txo_up_producer', 'txo_up_consumer', 'txo_up_admin']) r;
SELECT txoutbox.grant_role('txo_up_consumer', 'consumer');
SELECT txoutbox.grant_role('txo_up_admin', 'admin');
SELECT r AS role, has_function_privilege(r, 'txoutbox.notified_since(timestamptz,text,text,text,text,integer,uuid)', 'EXECUTE') AS notified_since,
       has_function_privilege(r, 'txoutbox.destinations(uuid)', 'EXECUTE') AS destinations
  FROM unnest(ARRAY['txo_up_producer', 'txo_up_consumer', 'txo_up_admin']) r;
-- the grants on enqueue are still changes after the install (pg_dump dumps
-- them): its initial privileges are a fresh install's, the owner's alone
SELECT pg_catalog.array_length(ip.initprivs, 1) AS initial_privileges,
       (SELECT count(*) FROM aclexplode(p.proacl) a WHERE a.grantee <> p.proowner) AS granted_since
  FROM pg_init_privs ip JOIN pg_proc p ON p.oid = ip.objoid
 WHERE ip.objoid = 'txoutbox.enqueue(text,jsonb,text,jsonb,text,text,text,timestamptz,integer,text,timestamptz)'::regprocedure;
-- the producer enqueues through the new function, with its new arguments
SET ROLE txo_up_producer;
SELECT topic, idempotency_key, expires_at FROM txoutbox.enqueue('up.by_producer', '{}', idempotency_key => 'p1',
                                                                expires_at => '2100-01-01 00:00:00+00');
RESET ROLE;

-- The four columns of 0.2.0 are NULL for every message made at 0.1.0
SELECT count(*) AS messages_of_0_1_0,
       count(*) FILTER (WHERE route_id IS NULL AND fanout_of IS NULL AND idempotency_key IS NULL
                          AND expires_at IS NULL) AS with_null_new_columns
  FROM txoutbox.messages WHERE topic <> 'up.by_producer';
-- A second ordinary route with an existing pattern is refused as before;
-- a fan-out route may share it, and gets a copy of what is enqueued next
SELECT pg_temp.try($$SELECT txoutbox.add_route('up.notify.*', 'notify')$$);
SELECT topic_pattern, config FROM txoutbox.add_route('up.notify.*', 'notify', '{"fanout": true, "channel": "txo_up_fanout"}');
SELECT id AS fanned_id FROM txoutbox.enqueue('up.notify.fanned', '{"n": "fanned"}') \gset
SELECT count(*) AS copies, count(DISTINCT d.fanout_of) AS messages,
       count(*) FILTER (WHERE d.route_id IS NULL) AS for_the_topic_route
  FROM txoutbox.destinations(:'fanned_id') d;
-- an idempotency key taken at 0.2.0 returns its message
SELECT count(DISTINCT e.id) AS one_message
  FROM generate_series(1, 2) g,
       txoutbox.enqueue('up.keyed', '{"n": "keyed"}', idempotency_key => 'k' || left(g::text, 0)) e;
DELETE FROM txoutbox.messages WHERE topic IN ('up.by_producer', 'up.notify.fanned', 'up.keyed');
DELETE FROM txoutbox.routes WHERE config ? 'fanout';

-- pg_dump now keeps the tables' rows (and where route ids go on)
SELECT unnest(extconfig)::regclass AS dumped_with_its_rows
  FROM pg_extension WHERE extname = 'txoutbox' ORDER BY 1::text;

-- ---------------------------------------------------------------------------
-- The kept messages move on under 0.2.0
-- ---------------------------------------------------------------------------
-- the lease is still up-consumer's until 00:05; after it, another takes over
SELECT pg_temp.claim_one('leased', '2020-01-01 00:04:00+00', '2020-01-01 00:06:00+00', 'other');
SELECT pg_temp.claim_one('leased', '2020-01-01 00:05:30+00', '2020-01-01 00:06:00+00', 'other');
SELECT pg_temp.try_unchanged(format($$SELECT txoutbox.mark_succeeded(%L, consumer => 'up-consumer')$$,
                                   pg_temp.id_of('leased')), pg_temp.id_of('leased'));
SELECT status FROM txoutbox.mark_succeeded(pg_temp.id_of('leased'), published_at => '2020-01-01 00:05:40+00',
                                           consumer => 'other');
-- the retrying one is due at 00:10
SELECT pg_temp.claim_one('retrying', '2020-01-01 00:09:00+00', '2020-01-01 00:20:00+00');
SELECT pg_temp.claim_one('retrying', '2020-01-01 00:10:00+00', '2020-01-01 00:20:00+00');
SELECT status, attempt_count FROM txoutbox.mark_failed(pg_temp.id_of('retrying'), 'again');
-- the failed one replays; the skipped key's next message is claimable, the
-- blocked key's is not
SELECT status, attempt_count FROM txoutbox.replay(pg_temp.id_of('failed'));
SELECT m.payload ->> 'n' AS claimable_on_the_ordered_route
  FROM txoutbox.claim('up-consumer', 100, topic => 'up.ordered', as_of => '2020-01-02 00:00:00+00') m;
-- dispatch() publishes the pending one and the replayed one through their
-- notify routes (the delayed one waits)
SELECT * FROM txoutbox.dispatch(topic => 'up.notify.pending');
SELECT * FROM txoutbox.dispatch(topic => 'up.notify.delayed');
SELECT * FROM txoutbox.dispatch(topic => 'up.notify.exact');
-- notified_since(): the notify messages that succeeded, in publish order
SELECT payload ->> 'n' AS n, published_at FROM txoutbox.notified_since('2020-01-01 00:00:00+00')
 WHERE published_at < '2021-01-01';
SELECT payload ->> 'n' AS n FROM txoutbox.notified_since('2021-01-01 00:00:00+00') ORDER BY 1;
-- a new route's id is past the removed one's
SELECT id, topic_pattern FROM txoutbox.add_route('up.new', 'notify');
SELECT payload ->> 'n' AS n, status, attempt_count, locked_by, last_error
  FROM txoutbox.messages ORDER BY id;

-- ---------------------------------------------------------------------------
-- Back to an empty outbox, as CREATE EXTENSION leaves it, for the suites
-- that follow
-- ---------------------------------------------------------------------------
SELECT txoutbox.revoke_role(r::regrole) FROM unnest(ARRAY['txo_up_producer', 'txo_up_consumer', 'txo_up_admin']) r;
DROP ROLE txo_up_producer, txo_up_consumer, txo_up_admin;
TRUNCATE txoutbox.messages, txoutbox.skipped_messages;
TRUNCATE txoutbox.routes RESTART IDENTITY;
DROP TABLE public.txo_up_messages, public.txo_up_routes, public.txo_up_skipped, public.txo_up_published;
DROP FUNCTION public.txo_up_publish(txoutbox.messages);
