-- notified_since: what a NOTIFY listener reads to catch up after a reconnect
-- (issue 11, item 8).  The succeeded messages whose topic goes to a notify
-- route now (on the channel, when given), published at since or later, in
-- publish order (published_at, then id: not id order), paged by keyset;
-- topic pattern, tenant and org filters; the bound tenant; the arguments'
-- errors; who may call it.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- runnable alone too
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS txoutbox;
DO $$
DECLARE r name;
BEGIN
    FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'txo\_ns\_%' LOOP
        EXECUTE format('DROP OWNED BY %I CASCADE', r);
        EXECUTE format('DROP ROLE %I', r);
    END LOOP;
END
$$;
DROP FUNCTION IF EXISTS public.txo_ns_publish(txoutbox.messages);
RESET client_min_messages;
TRUNCATE txoutbox.messages, txoutbox.skipped_messages;
DELETE FROM txoutbox.routes;
\set ECHO none
\i test/regress_helpers.sql
\set ECHO all

CREATE FUNCTION public.txo_ns_publish(m txoutbox.messages) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT count(*) FROM (VALUES
    (txoutbox.add_route('ns.*', 'notify', '{"channel": "ns_ch"}')),
    (txoutbox.add_route('ns.other.*', 'notify', '{"channel": "ns_other"}')),
    (txoutbox.add_route('ns.plain', 'notify')),
    (txoutbox.add_route('ns.fn', 'function', '{"function": "public.txo_ns_publish"}')),
    (txoutbox.add_route('off.x', 'notify', '{"channel": "ns_ch"}'))) r;
UPDATE txoutbox.routes SET enabled = false WHERE topic_pattern = 'off.x';

-- put(n, topic, published_at): a message named n (its payload), made
-- succeeded at published_at (NULL: left pending); tenant-a unless n ends in
-- "-b".  They are enqueued in the order of the calls, so ids follow it.
CREATE FUNCTION pg_temp.put(n text, topic text, published_at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid := (txoutbox.enqueue(topic, jsonb_build_object('n', n),
                                 tenant_id => CASE WHEN n LIKE '%-b' THEN 'tenant-b' ELSE 'tenant-a' END,
                                 org_id => CASE WHEN n LIKE 'o%' THEN 'org-o' ELSE 'org-x' END)).id;
BEGIN
    IF published_at IS NOT NULL THEN
        UPDATE txoutbox.messages m SET status = 'succeeded', attempt_count = 1, published_at = put.published_at,
                                       updated_at = put.published_at
         WHERE m.id = new_id;
    END IF;
END
$$;
-- the names of the rows of a notified_since() call, in its order
CREATE FUNCTION pg_temp.names(rows txoutbox.messages[]) RETURNS text
LANGUAGE sql AS $$
    SELECT coalesce(string_agg((rows[i]).payload ->> 'n', ' ' ORDER BY i), '(none)')
      FROM generate_subscripts(rows, 1) i
$$;

-- "late" is enqueued first but published last (a delayed or retried
-- message): publish order is not id order.  t1 and t2 share a round's
-- published_at: ties go by id.
SELECT pg_temp.put('late',      'ns.a',         '2020-01-01 00:09:00+00');
SELECT pg_temp.put('t1',        'ns.a',         '2020-01-01 00:02:00+00');
SELECT pg_temp.put('t2',        'ns.b',         '2020-01-01 00:02:00+00');
SELECT pg_temp.put('early',     'ns.a',         '2020-01-01 00:01:00+00');
SELECT pg_temp.put('other',     'ns.other.x',   '2020-01-01 00:03:00+00');
SELECT pg_temp.put('plain',     'ns.plain',     '2020-01-01 00:04:00+00');
SELECT pg_temp.put('tenant-b',  'ns.a',         '2020-01-01 00:05:00+00');
SELECT pg_temp.put('org',       'ns.b',         '2020-01-01 00:06:00+00');
SELECT pg_temp.put('fn',        'ns.fn',        '2020-01-01 00:07:00+00');
SELECT pg_temp.put('off',       'off.x',        '2020-01-01 00:07:00+00');
SELECT pg_temp.put('unrouted',  'elsewhere',    '2020-01-01 00:07:00+00');
SELECT pg_temp.put('pending',   'ns.a',         NULL);
SELECT pg_temp.put('failed',    'ns.a',         NULL);
UPDATE txoutbox.messages SET status = 'failed', attempt_count = 1, last_error = 'x' WHERE payload ->> 'n' = 'failed';

-- Every notify message that succeeded since 00:00, in publish order: not
-- the function route's, not the one whose route is disabled now, not the
-- unrouted one, not the unfinished ones.
SELECT payload ->> 'n' AS n, topic, published_at
  FROM txoutbox.notified_since('2020-01-01 00:00:00+00');
-- since is inclusive
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2020-01-01 00:02:00+00') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2020-01-01 00:02:00.000001+00') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2020-01-01 00:10:00+00') m));

-- Keyset pagination: the next page starts after the last row, by
-- (published_at, id): since => its published_at, after_id => its id.  Ties
-- on published_at are split across pages correctly.
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2020-01-01 00:00:00+00', max_messages => 2) m));
SELECT published_at AS since, id AS after FROM txoutbox.notified_since('2020-01-01 00:00:00+00', max_messages => 2)
 ORDER BY published_at DESC, id DESC LIMIT 1 \gset
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since(:'since', max_messages => 2, after_id => :'after') m));
-- walking every page of 2: each message once, in publish order
WITH RECURSIVE pages(page, rows) AS (
    SELECT 1, array(SELECT m FROM txoutbox.notified_since('2020-01-01 00:00:00+00', max_messages => 2) m)
  UNION ALL
    SELECT p.page + 1,
           array(SELECT m FROM txoutbox.notified_since((p.rows[2]).published_at, max_messages => 2,
                                                        after_id => (p.rows[2]).id) m)
      FROM pages p WHERE cardinality(p.rows) = 2)
SELECT page, pg_temp.names(rows) FROM pages ORDER BY page;

-- Filters.  channel: the channel of the route the topic goes to now (the
-- most specific enabled one; "txoutbox" by default).
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', channel => 'ns_ch') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', channel => 'ns_other') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', channel => 'txoutbox') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', channel => 'nobody') m));
-- topic_pattern: an exact topic or a prefix ending in *
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', topic_pattern => 'ns.b') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', topic_pattern => 'ns.other.*') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', topic_pattern => 'ns.*') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', topic_pattern => '*') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', topic_pattern => 'ns.', channel => 'ns_ch') m));
-- tenant and org, alone and with the rest
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', tenant_id => 'tenant-b') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', org_id => 'org-o') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', channel => 'ns_ch', topic_pattern => 'ns.a',
                                                                 tenant_id => 'tenant-a', max_messages => 2) m));
-- a session bound to a tenant sees only its messages
SET txoutbox.tenant_id = 'tenant-b';
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31') m));
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', tenant_id => 'tenant-a') m));
RESET txoutbox.tenant_id;
-- the rows are the messages as they are (the whole row, payload included)
SELECT n.*::text = m.*::text AS whole_rows
  FROM txoutbox.notified_since('2019-12-31', topic_pattern => 'ns.other.x') n
  JOIN txoutbox.messages m USING (id);
-- a route changed later changes what a channel lists: routes as they are now
UPDATE txoutbox.routes SET enabled = true WHERE topic_pattern = 'off.x';
SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2020-01-01 00:07:00+00') m));
UPDATE txoutbox.routes SET enabled = false WHERE topic_pattern = 'off.x';

-- Errors: each names its argument; nothing is returned
SELECT pg_temp.try($$SELECT txoutbox.notified_since(NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('infinity')$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('-infinity')$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', max_messages => NULL)$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', max_messages => 0)$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', max_messages => 10001)$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', channel => '')$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', channel => repeat('c', 64))$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', topic_pattern => '')$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', topic_pattern => repeat('t', 256))$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', topic_pattern => 'ns.*.a')$$);
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', topic_pattern => '**')$$);
-- the longest allowed values are fine
SELECT pg_temp.try($$SELECT txoutbox.notified_since('2019-12-31', channel => repeat('c', 63),
                                                    topic_pattern => repeat('t', 254) || '*', max_messages => 10000)$$);

-- Who may call it: the consumer and admin grant sets, not the producer's
-- nor PUBLIC; it runs with the extension's rights (no table grants needed).
CREATE ROLE txo_ns_consumer;
CREATE ROLE txo_ns_admin;
CREATE ROLE txo_ns_producer;
CREATE ROLE txo_ns_nobody;
SELECT txoutbox.grant_role('txo_ns_consumer', 'consumer');
SELECT txoutbox.grant_role('txo_ns_admin', 'admin');
SELECT txoutbox.grant_role('txo_ns_producer', 'producer');
CREATE FUNCTION pg_temp.as_role(r name) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    SELECT pg_temp.names(array(SELECT m FROM txoutbox.notified_since('2019-12-31', topic_pattern => 'ns.b') m)) INTO result;
    RESET ROLE;
    RETURN result;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT r AS role, pg_temp.as_role(r) FROM unnest(ARRAY['txo_ns_consumer', 'txo_ns_admin', 'txo_ns_producer', 'txo_ns_nobody']::name[]) r;

SELECT txoutbox.revoke_role(r::regrole) FROM unnest(ARRAY['txo_ns_consumer', 'txo_ns_admin', 'txo_ns_producer']) r;
DROP ROLE txo_ns_consumer, txo_ns_admin, txo_ns_producer, txo_ns_nobody;
DROP FUNCTION public.txo_ns_publish(txoutbox.messages);
TRUNCATE txoutbox.messages;
DELETE FROM txoutbox.routes;
